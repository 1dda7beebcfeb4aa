//! The API descriptions: served by the server exactly as `docs/` has them, and covering every
//! route the router has (the live server is held to `docs/openapi.yaml` by
//! `tests/api/check_openapi.py`, which `.ci/run` runs with schemathesis).

mod common;

use common::TestServer;

const OPENAPI: &str = include_str!("../docs/openapi.yaml");
const ASYNCAPI: &str = include_str!("../docs/asyncapi.yaml");

#[tokio::test]
async fn the_api_descriptions_are_served_as_docs_has_them() {
    let server = TestServer::start();
    for (path, file) in [("/openapi.yaml", OPENAPI), ("/asyncapi.yaml", ASYNCAPI)] {
        let response = reqwest::get(server.http(path)).await.expect("request");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()[reqwest::header::CONTENT_TYPE],
            "application/yaml",
            "{path}"
        );
        assert_eq!(response.text().await.expect("body"), file, "{path}");
    }
}

/// The paths `docs/openapi.yaml` describes: its keys two spaces in under `paths:`.
fn described_paths() -> Vec<&'static str> {
    let paths = OPENAPI.split_once("\npaths:\n").expect("a paths section").1;
    let section = paths.split("\ncomponents:").next().unwrap_or(paths);
    section
        .lines()
        .filter_map(|line| line.strip_prefix("  /"))
        .filter_map(|rest| rest.strip_suffix(':'))
        .collect()
}

#[test]
fn every_api_route_of_the_router_is_described() {
    let described = described_paths();
    assert!(
        described.len() >= 20,
        "paths read from the spec: {described:?}"
    );
    let mut routes = 0;
    for path in buyline::route_templates() {
        // The page and its files are not API routes.
        if path.starts_with("/v1/") || ["/healthz", "/readyz", "/metrics"].contains(path) {
            routes += 1;
            assert!(
                described.contains(&&path[1..]),
                "route {path} is not in docs/openapi.yaml"
            );
        }
    }
    assert!(routes >= 20, "API routes of the router: {routes}");
}
