//! `buyline_http_request_seconds{route}`: every request timed, labelled with its route's
//! template (`/v1/reservations/{id}`), never its raw path, so the label's values are bounded.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::http::Request;
use axum::response::Response;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::telemetry;

/// The router's templates ([`super::route_templates`]) in a matcher of the same kind and syntax
/// as axum's, so a path finds the template the router would match it with.
fn matcher() -> &'static matchit::Router<usize> {
    static MATCHER: OnceLock<matchit::Router<usize>> = OnceLock::new();
    MATCHER.get_or_init(|| {
        let mut matcher = matchit::Router::new();
        for (index, template) in super::route_templates().iter().enumerate() {
            if let Err(error) = matcher.insert(*template, index) {
                // The router took the same template: a bad one is a bug, found at once.
                panic!("route template {template}: {error}");
            }
        }
        matcher
    })
}

/// The router, with every request timed.
///
/// It wraps the whole router, where hyper calls it, and finds the route template itself:
/// axum's own per-route layers (`Router::layer`, `middleware::from_fn`) box a service and a
/// future on every request, five allocations on the reservation path; this allocates none.
/// Cost: two clock reads, a second match of the path (the matcher axum's router runs too;
/// path parameters kept inline, no allocation) and [`telemetry::http_request`].
#[derive(Clone, Debug)]
pub struct RouteTimer<S> {
    inner: S,
}

impl<S> RouteTimer<S> {
    /// Times `inner`'s requests; lists every route's series in `/metrics` from now on.
    pub fn new(inner: S) -> RouteTimer<S> {
        telemetry::http_routes(super::route_templates());
        RouteTimer { inner }
    }
}

impl<S, B> Service<Request<B>> for RouteTimer<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Timed<S::Future> {
        let started = Instant::now();
        let route = matcher().at(request.uri().path()).ok().map(|m| *m.value);
        Timed {
            inner: self.inner.call(request),
            route,
            started,
        }
    }
}

pin_project! {
    /// A response on its way, recorded when it is ready.
    pub struct Timed<F> {
        #[pin]
        inner: F,
        route: Option<usize>,
        started: Instant,
    }
}

impl<F, E> Future for Timed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        telemetry::http_request(*this.route, this.started.elapsed());
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_finds_its_template_and_an_unknown_one_none() {
        let template = |path: &str| {
            matcher()
                .at(path)
                .ok()
                .map(|m| super::super::route_templates()[*m.value])
        };
        assert_eq!(template("/v1/reservations"), Some("/v1/reservations"));
        assert_eq!(
            template("/v1/reservations/h-123"),
            Some("/v1/reservations/{id}")
        );
        assert_eq!(
            template("/v1/admin/products/tee/restock"),
            Some("/v1/admin/products/{id}/restock")
        );
        assert_eq!(template("/v1/nope"), None);
        assert_eq!(template("/v1/reservations/h-1/extra"), None);
    }
}
