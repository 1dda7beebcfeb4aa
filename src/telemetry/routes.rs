//! The metrics of the HTTP routes: how long each request took, by route template.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Histogram, describe_histogram, histogram};

pub(super) const HTTP_REQUEST_SECONDS: &str = "buyline_http_request_seconds";

/// The label of a request no route matched.
const UNMATCHED: &str = "other";

/// Most route templates given a series of their own: the router has about thirty; the bound
/// keeps the label's values few whatever a caller passes.
const MAX_ROUTES: usize = 64;

/// The histogram handles: one per route template, in the order [`http_routes`] was given
/// them, and one for requests no route matched.
struct RouteHistograms {
    by_route: Box<[Histogram]>,
    other: Histogram,
}

static ROUTES: OnceLock<RouteHistograms> = OnceLock::new();

/// Registers the help text of the metrics above.
pub(super) fn describe() {
    describe_histogram!(
        HTTP_REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time from a request's head being read to its response's head being ready, by route template (`other`: no route matched)."
    );
}

/// Makes one series per route template (at most [`MAX_ROUTES`]) and one for `other`, so every
/// route is listed from the start. The first call wins; later ones (one per shard) find the
/// handles made. Does nothing before [`super::install`]: handles made then would record
/// nowhere, for good.
pub fn http_routes(templates: &[&'static str]) {
    assert!(
        templates.len() <= MAX_ROUTES,
        "{} route templates, over the {MAX_ROUTES} the label allows",
        templates.len()
    );
    if !super::installed() {
        return;
    }
    ROUTES.get_or_init(|| RouteHistograms {
        by_route: templates
            .iter()
            .map(|template| histogram!(HTTP_REQUEST_SECONDS, "route" => *template))
            .collect(),
        other: histogram!(HTTP_REQUEST_SECONDS, "route" => UNMATCHED),
    });
}

/// A request to route number `route` (its place in the templates [`http_routes`] was given;
/// `None` when no route matched) took `elapsed`.
///
/// Cost: a load of the handle table, an index, and the histogram's lock-free push (a block
/// allocation every 64 samples, amortised).
pub fn http_request(route: Option<usize>, elapsed: Duration) {
    let Some(routes) = ROUTES.get() else {
        return;
    };
    let handle = route
        .and_then(|index| routes.by_route.get(index))
        .unwrap_or(&routes.other);
    handle.record(elapsed.as_secs_f64());
}
