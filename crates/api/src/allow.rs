//! The `Allow` header of a 405 answer (RFC 9110, section 15.5.6): the methods the route of the
//! request's path does answer. Read once, at start-up, from the OpenAPI document (so it cannot
//! drift from the routes) and from the few routes outside it, the web client's among them.

/// Routes outside the OpenAPI document, each answering `GET` only.
const UNDOCUMENTED_GET_ROUTES: [&str; 4] = ["/openapi.json", "/metrics", "/ws", "/docs"];

/// One segment of a route's path template.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{roomId}`: any one segment.
    Parameter,
}

/// For each route, its path template and the value of its `Allow` header.
#[derive(Debug)]
pub struct AllowedMethods {
    routes: Vec<(Vec<Segment>, String)>,
}

impl AllowedMethods {
    /// The routes of `document` (an OpenAPI document as JSON) and the undocumented ones.
    pub fn from_document(document: &str) -> Self {
        let document: serde_json::Value = serde_json::from_str(document).unwrap_or_default();
        let mut routes: Vec<(Vec<Segment>, String)> = document["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(path, item)| {
                let methods = item.as_object().into_iter().flatten().map(|(method, _)| method.as_str());
                (segments(path), allow_value(methods))
            })
            .collect();
        let undocumented = UNDOCUMENTED_GET_ROUTES.into_iter().chain(crate::web::paths());
        routes.extend(undocumented.map(|path| (segments(path), allow_value(["get"]))));
        Self { routes }
    }

    /// The `Allow` value for a request to `path`, if a route has that path.
    pub fn for_path(&self, path: &str) -> Option<&str> {
        let requested: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        self.routes
            .iter()
            .find(|(template, _)| {
                template.len() == requested.len()
                    && template.iter().zip(&requested).all(|(segment, given)| match segment {
                        Segment::Literal(literal) => literal == given,
                        Segment::Parameter => !given.is_empty(),
                    })
            })
            .map(|(_, allow)| allow.as_str())
    }
}

fn segments(path: &str) -> Vec<Segment> {
    path.trim_end_matches('/')
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                Segment::Parameter
            } else {
                Segment::Literal(segment.to_owned())
            }
        })
        .collect()
}

/// `GET, HEAD, POST`: upper case, in a fixed order, with `HEAD` wherever `GET` is (a `HEAD` is
/// answered as a `GET` without its body).
fn allow_value<'a>(methods: impl IntoIterator<Item = &'a str>) -> String {
    let given: Vec<String> = methods.into_iter().map(str::to_ascii_uppercase).collect();
    let has = |method: &str| given.iter().any(|m| m == method);
    let allowed = |method: &&str| has(method) || (*method == "HEAD" && has("GET"));
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .into_iter()
        .filter(allowed)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_gets_the_methods_of_its_route_with_head_beside_get() {
        let allowed = AllowedMethods::from_document(&crate::openapi_json());
        assert_eq!(allowed.for_path("/chat/room"), Some("POST"));
        assert_eq!(allowed.for_path("/chat/message/0193-any-id"), Some("PATCH, DELETE"));
        assert_eq!(allowed.for_path("/chat/message"), Some("POST"));
        assert_eq!(allowed.for_path("/chat/messages"), Some("GET, HEAD"));
        assert_eq!(allowed.for_path("/chat/room/abc/join"), Some("POST"));
        assert_eq!(allowed.for_path("/ws"), Some("GET, HEAD"));
        assert_eq!(allowed.for_path("/"), Some("GET, HEAD"));
        assert_eq!(allowed.for_path("/favicon.ico"), Some("GET, HEAD"));
        assert_eq!(allowed.for_path("/app.js"), Some("GET, HEAD"));
        assert_eq!(allowed.for_path("/chat/room/abc/unknown"), None);
        assert_eq!(allowed.for_path("/nowhere"), None);
    }
}
