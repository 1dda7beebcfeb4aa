//! The page at `/` and its files (`/buyline.js`, `/page.js`, `/page.css`, the favicon), compiled
//! into the binary: no build step, no CDN, and the page works with no network but the server.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// One embedded file: its bytes and the `Content-Type` it is served with.
struct StaticFile {
    body: &'static str,
    content_type: &'static str,
}

/// The page: timelines, live buy buttons, the buy flow, orders and the wallet.
const INDEX_HTML: StaticFile = StaticFile {
    body: include_str!("../../static/index.html"),
    content_type: "text/html; charset=utf-8",
};

/// The JavaScript client for `/v1/stream` (an ES module with no dependencies).
const BUYLINE_JS: StaticFile = StaticFile {
    body: include_str!("../../static/buyline.js"),
    content_type: "text/javascript; charset=utf-8",
};

/// The page's own script, built on `buyline.js`.
const PAGE_JS: StaticFile = StaticFile {
    body: include_str!("../../static/page.js"),
    content_type: "text/javascript; charset=utf-8",
};

const PAGE_CSS: StaticFile = StaticFile {
    body: include_str!("../../static/page.css"),
    content_type: "text/css; charset=utf-8",
};

/// Served for `/favicon.ico` too: browsers ask for it, and a 404 is a console error.
const FAVICON_SVG: StaticFile = StaticFile {
    body: include_str!("../../static/favicon.svg"),
    content_type: "image/svg+xml",
};

/// `no-cache`: a browser revalidates, so a new binary's page is never mixed with an old script.
fn serve(file: &StaticFile) -> Response {
    (
        [
            (header::CONTENT_TYPE, file.content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        file.body,
    )
        .into_response()
}

pub async fn index_html() -> Response {
    serve(&INDEX_HTML)
}

pub async fn buyline_js() -> Response {
    serve(&BUYLINE_JS)
}

pub async fn page_js() -> Response {
    serve(&PAGE_JS)
}

pub async fn page_css() -> Response {
    serve(&PAGE_CSS)
}

pub async fn favicon() -> Response {
    serve(&FAVICON_SVG)
}
