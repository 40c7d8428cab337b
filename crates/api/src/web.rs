//! The web client: one page at `/` with its script and style sheet, embedded in the binary. The
//! page speaks to Convo only through the public contract (REST and the WebSocket protocol), so
//! it is served outside the OpenAPI document.
//!
//! Every file answers with a strict Content-Security-Policy (scripts, styles and connections to
//! this origin only; nothing inline), `no-cache` with an `ETag` (a browser revalidates and gets
//! `304` while the binary is unchanged), and `nosniff`.

use poem::error::MethodNotAllowedError;
use poem::http::header::{CACHE_CONTROL, CONTENT_LENGTH, ETAG, IF_NONE_MATCH};
use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use poem_openapi::OperationId;

/// The policy the page works under: its own script and style sheet, REST and WebSocket calls to
/// its own origin, and nothing else (no inline script or style, no frames, no plugins).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file and the path it answers at.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 4] = [
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_bytes!("../web/index.html") },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/app.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../web/style.css"),
    },
    Asset { path: "/favicon.ico", content_type: "image/svg+xml", body: include_bytes!("../web/favicon.svg") },
];

/// The paths the page's files answer at (each with `GET` and `HEAD`).
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|asset| asset.path)
}

/// Answers the page's paths in front of the routes. (A route at `/` beside the REST routes, which
/// are nested at `/`, would never be reached: poem's router gives an empty rest of the path to
/// the nest.) Other methods on those paths are answered 405; every other path goes on.
pub struct WebClient;

impl<E: Endpoint> Middleware<E> for WebClient {
    type Output = WebClientEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        WebClientEndpoint { inner }
    }
}

pub struct WebClientEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for WebClientEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> Result<Response> {
        let Some(asset) = ASSETS.iter().find(|asset| asset.path == request.uri().path()) else {
            return self.inner.call(request).await.map(IntoResponse::into_response);
        };
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Err(MethodNotAllowedError.into());
        }
        Ok(serve(asset, &request))
    }
}

fn serve(asset: &Asset, request: &Request) -> Response {
    let etag = etag_of(asset.body);
    let fresh = request
        .header(IF_NONE_MATCH)
        .is_some_and(|given| given.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if fresh {
        Response::builder().status(StatusCode::NOT_MODIFIED).finish()
    } else if request.method() == Method::HEAD {
        Response::builder().content_type(asset.content_type).header(CONTENT_LENGTH, asset.body.len()).finish()
    } else {
        Response::builder().content_type(asset.content_type).body(asset.body)
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("content-security-policy", HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // The metrics label of these requests.
    response.set_data(OperationId("webClient"));
    response
}

/// A strong validator for `body`: its 64-bit FNV-1a hash, quoted.
fn etag_of(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use poem::test::TestClient;
    use poem::{EndpointExt, handler};

    use super::*;

    #[handler]
    fn elsewhere() -> &'static str {
        "the routes"
    }

    fn client() -> TestClient<impl Endpoint> {
        TestClient::new(elsewhere.with(WebClient))
    }

    #[tokio::test]
    async fn the_page_is_html_under_a_strict_policy_and_revalidated() {
        let response = client().get("/").send().await;
        response.assert_status_is_ok();
        response.assert_content_type("text/html; charset=utf-8");
        response.assert_header("content-security-policy", CONTENT_SECURITY_POLICY);
        response.assert_header("cache-control", "no-cache");
        response.assert_header("x-content-type-options", "nosniff");
        let etag = response.0.headers().get(ETAG).cloned().expect("an etag");
        let body = response.0.into_body().into_string().await.expect("text");
        assert!(body.contains(r#"<script type="module" src="/app.js"></script>"#));

        let again = client().get("/").header(IF_NONE_MATCH, etag).send().await;
        again.assert_status(StatusCode::NOT_MODIFIED);
        assert!(again.0.into_body().into_bytes().await.expect("body").is_empty());
    }

    #[tokio::test]
    async fn each_file_has_its_type_and_head_answers_without_a_body() {
        for (path, content_type) in [
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/favicon.ico", "image/svg+xml"),
        ] {
            let response = client().get(path).send().await;
            response.assert_status_is_ok();
            response.assert_content_type(content_type);
            let head = client().head(path).send().await;
            head.assert_status_is_ok();
            assert!(head.0.into_body().into_bytes().await.expect("body").is_empty());
        }
    }

    #[tokio::test]
    async fn other_methods_are_refused_and_other_paths_go_on() {
        let refused = client().post("/").send().await;
        refused.assert_status(StatusCode::METHOD_NOT_ALLOWED);
        let passed = client().get("/chat/rooms").send().await;
        passed.assert_status_is_ok();
        passed.assert_text("the routes").await;
    }

    #[test]
    fn an_etag_changes_with_the_content() {
        assert_eq!(etag_of(b"a"), etag_of(b"a"));
        assert_ne!(etag_of(b"a"), etag_of(b"b"));
        assert!(etag_of(b"").starts_with('"') && etag_of(b"").ends_with('"'));
    }
}
