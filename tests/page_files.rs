//! The page and its files are served from the binary with the right `Content-Type`, and load
//! nothing from another host (the page works offline). The page itself is tested in a real
//! browser under `tests/browser/`.

mod common;

use common::TestServer;

/// Every file the page is made of, with the `Content-Type` a browser needs to use it (a module
/// script with another type is refused).
const PAGE_FILES: [(&str, &str); 6] = [
    ("/", "text/html; charset=utf-8"),
    ("/buyline.js", "text/javascript; charset=utf-8"),
    ("/page.js", "text/javascript; charset=utf-8"),
    ("/page.css", "text/css; charset=utf-8"),
    ("/favicon.svg", "image/svg+xml"),
    ("/favicon.ico", "image/svg+xml"),
];

#[tokio::test]
async fn every_page_file_is_served_with_its_content_type() {
    let server = TestServer::start();
    for (path, content_type) in PAGE_FILES {
        let response = reqwest::get(server.http(path)).await.expect("request");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()[reqwest::header::CONTENT_TYPE],
            content_type,
            "{path}"
        );
        assert!(!response.text().await.expect("body").is_empty(), "{path}");
    }
}

#[tokio::test]
async fn the_page_loads_nothing_from_another_host() {
    let server = TestServer::start();
    for (path, _) in PAGE_FILES {
        let body = reqwest::get(server.http(path))
            .await
            .expect("request")
            .text()
            .await
            .expect("body")
            // A namespace name, never fetched.
            .replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
        for remote in ["http://", "https://", "//cdn", "url(//"] {
            assert!(!body.contains(remote), "{path} refers to {remote}");
        }
    }
}
