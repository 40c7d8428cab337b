//! The OpenAPI document as the judge of every response the black-box tests read through
//! [`crate::expect_status`]: the status must be one the document declares for the path, the
//! content type the one it declares for that status, and the body must validate against the
//! declared schema. The document is the committed `openapi/openapi.json` (a test in the api crate
//! keeps it equal to what the server serves); its schemas are OpenAPI 3.0, so `nullable` is
//! rewritten into JSON Schema once, and each validator is compiled on first use.
//!
//! Likewise [`check_frame`] holds every WebSocket frame the server sends the tests' client
//! ([`crate::ws`]) to the payload schema `openapi/asyncapi.yaml` declares for its `type`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use jsonschema::{Draft, Validator};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};

static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../openapi/openapi.json")).expect("openapi.json is JSON")
});

/// The document's component schemas in JSON Schema terms.
static COMPONENTS: LazyLock<Value> = LazyLock::new(|| {
    let mut schemas = DOCUMENT["components"]["schemas"].clone();
    rewrite_nullable(&mut schemas);
    json!({ "schemas": schemas })
});

type Key = (String, String, u16, String);
static VALIDATORS: LazyLock<Mutex<HashMap<Key, Arc<Validator>>>> = LazyLock::new(Default::default);

/// OpenAPI 3.0's `nullable: true` is JSON Schema's "or null".
fn rewrite_nullable(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(rewrite_nullable);
            if map.remove("nullable") == Some(Value::Bool(true)) {
                let schema = Value::Object(std::mem::take(map));
                map.insert("anyOf".to_owned(), json!([schema, {"type": "null"}]));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_nullable),
        _ => {}
    }
}

/// The document's path template that `path` falls under, if any (`/chat/room/{roomId}` for
/// `/chat/room/0192...`); a literal segment beats a parameter.
fn template_of(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.split('/').collect();
    DOCUMENT["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .filter(|template| {
            let pattern: Vec<&str> = template.split('/').collect();
            pattern.len() == segments.len()
                && pattern.iter().zip(&segments).all(|(p, s)| p == s || (p.starts_with('{') && !s.is_empty()))
        })
        .min_by_key(|template| template.matches('{').count())
        .map(String::as_str)
}

fn validator(template: &str, method: &str, status: u16, media_type: &str, schema: &Value) -> Arc<Validator> {
    let key = (template.to_owned(), method.to_owned(), status, media_type.to_owned());
    let mut cache = VALIDATORS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    cache
        .entry(key)
        .or_insert_with(|| {
            let mut schema = schema.clone();
            rewrite_nullable(&mut schema);
            let root = json!({ "allOf": [schema], "components": COMPONENTS.clone() });
            let compiled = jsonschema::options()
                .with_draft(Draft::Draft202012)
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|error| panic!("schema of {method} {template} {status}: {error}"));
            Arc::new(compiled)
        })
        .clone()
}

/// Checks a response the server gave for `path` against the document; panics naming what the
/// document does not allow. Paths the document does not describe (`/openapi.json`, `/metrics`,
/// `/docs`, unknown routes) and 405 answers (a method the path has no operation for) pass.
pub fn check_response(path: &str, status: StatusCode, content_type: Option<&str>, body: &Value) {
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return;
    }
    let Some(template) = template_of(path) else { return };
    let operations: &Map<String, Value> = DOCUMENT["paths"][template].as_object().expect("path item");
    let declaring: Vec<(&String, &Value)> = operations
        .iter()
        .filter_map(|(method, operation)| Some((method, operation["responses"].get(status.as_str())?)))
        .collect();
    assert!(!declaring.is_empty(), "no operation of {template} declares status {status}; body: {body}");
    let mut failures = Vec::new();
    for (method, response) in declaring {
        let content = response["content"].as_object();
        let Some(content) = content.filter(|c| !c.is_empty()) else {
            if body.is_null() {
                return;
            }
            failures.push(format!("{method}: declares no body"));
            continue;
        };
        let Some((media_type, media)) =
            content.iter().find(|(media_type, _)| Some(media_type.as_str()) == content_type)
        else {
            failures
                .push(format!("{method}: content type {content_type:?} is not one of {:?}", content.keys()));
            continue;
        };
        let validator = validator(template, method, status.as_u16(), media_type, &media["schema"]);
        let errors: Vec<String> = validator.iter_errors(body).map(|error| error.to_string()).collect();
        if errors.is_empty() {
            return;
        }
        failures.push(format!("{method}: {}", errors.join("; ")));
    }
    panic!("the {status} response of {path} breaks the document ({}); body: {body}", failures.join(" | "));
}

/// The payload schema of each frame the server sends, by its `type`.
static FRAMES: LazyLock<HashMap<String, Validator>> = LazyLock::new(|| {
    let document: Value =
        serde_yaml::from_str(include_str!("../../openapi/asyncapi.yaml")).expect("asyncapi.yaml is YAML");
    let components = json!({ "schemas": document["components"]["schemas"].clone() });
    let sent = document["operations"]["receiveFromServer"]["messages"].as_array().expect("messages");
    sent.iter()
        .map(|reference| {
            let name = reference["$ref"].as_str().and_then(|r| r.rsplit('/').next()).expect("a message $ref");
            let payload = &document["components"]["messages"][name]["payload"];
            let kind = payload["properties"]["type"]["const"].as_str().expect("a const type").to_owned();
            let root = json!({ "allOf": [payload], "components": components });
            let validator = jsonschema::options()
                .with_draft(Draft::Draft7)
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|error| panic!("payload of {name}: {error}"));
            (kind, validator)
        })
        .collect()
});

/// Checks a frame the server sent against the AsyncAPI document; panics naming what it breaks.
pub fn check_frame(frame: &Value) {
    let kind = frame["type"].as_str().unwrap_or_else(|| panic!("a frame without a type: {frame}"));
    let validator =
        FRAMES.get(kind).unwrap_or_else(|| panic!("asyncapi.yaml declares no server frame {kind}: {frame}"));
    let errors: Vec<String> = validator.iter_errors(frame).map(|error| error.to_string()).collect();
    assert!(errors.is_empty(), "a {kind} frame breaks asyncapi.yaml ({}): {frame}", errors.join("; "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_under_their_templates() {
        assert_eq!(template_of("/chat/room/abc/join"), Some("/chat/room/{roomId}/join"));
        assert_eq!(template_of("/chat/rooms"), Some("/chat/rooms"));
        assert_eq!(template_of("/chat/messages"), Some("/chat/messages"));
        assert_eq!(template_of("/chat/message/x"), Some("/chat/message/{messageId}"));
        assert_eq!(template_of("/metrics"), None);
    }

    #[test]
    #[should_panic(expected = "breaks the document")]
    fn a_string_field_that_arrives_as_null_is_refused() {
        let user = json!({"id": "0192f000-0000-7000-8000-000000000000", "email": null, "username": "ada",
            "createdAt": "2026-12-01T00:00:00Z"});
        check_response("/auth/me", StatusCode::OK, Some("application/json; charset=utf-8"), &user);
    }

    #[test]
    fn a_nullable_field_may_be_null() {
        let message = json!({"id": "0192f000-0000-7000-8000-000000000000",
            "roomId": "0192f000-0000-7000-8000-000000000001", "seq": 1,
            "author": {"id": "0192f000-0000-7000-8000-000000000002", "username": "ada"},
            "content": "hi", "createdAt": "2026-12-01T00:00:00Z", "editedAt": null, "clientMessageId": null});
        check_response("/chat/message/x", StatusCode::OK, Some("application/json; charset=utf-8"), &message);
    }

    /// Whether `value` is valid for the schema of `property` of component `schema`.
    fn allowed(schema: &str, property: &str, value: &str) -> bool {
        let mut declared = DOCUMENT["components"]["schemas"][schema]["properties"][property].clone();
        rewrite_nullable(&mut declared);
        let validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .build(&declared)
            .expect("a valid schema");
        validator.is_valid(&Value::from(value))
    }

    /// The document's rule for a field and the domain's agree on every sample.
    fn agree<E>(schema: &str, property: &str, parse: impl Fn(&str) -> Result<(), E>, samples: &[&str]) {
        for sample in samples {
            let by_domain = parse(sample).is_ok();
            let by_document = allowed(schema, property, sample);
            assert_eq!(by_document, by_domain, "{schema}.{property} = {sample:?}: document vs domain");
        }
    }

    #[test]
    fn the_documents_rules_agree_with_the_domains() {
        use convo_domain::{ClientMessageId, Email, MessageContent, Password, RoomName, Username};
        let long = |c: &str, n: usize| c.repeat(n);
        let (x50, x51, x100, x101) = (long("x", 50), long("x", 51), long("x", 100), long("x", 101));
        let padded50 = format!(" \u{3000}{x50}\u{85} ");
        agree(
            "CreateRoomRequest",
            "name",
            |v| RoomName::parse(v).map(drop),
            &[
                "general",
                " general ",
                "a",
                "",
                "   ",
                "a/b",
                "名前",
                "Zürich 2",
                "a  b",
                "-",
                "_x_",
                &x50,
                &x51,
                &padded50,
                "\u{85}ab\u{85}",
                "\u{feff}ab",
                "a\tb",
                "١٢٣",
                "ab\u{301}",
            ],
        );
        agree(
            "MessageToRoomName",
            "chatRoomName",
            |v| RoomName::parse(v).map(drop),
            &["general", " a ", "a.b"],
        );
        let (c1000, c1001) = (long("é", 1000), long("é", 1001));
        let padded1000 = format!("\n {c1000} \u{2028}");
        agree(
            "EditMessageRequest",
            "content",
            |v| MessageContent::parse(v).map(drop),
            &["hello", "", " ", "\n\t", " a ", "<b>hi</b>", &c1000, &c1001, &padded1000, "😀", "a\u{0}b"],
        );
        agree(
            "MessageToRoomId",
            "clientMessageId",
            |v| ClientMessageId::parse(v).map(drop),
            &["k-1", "", " ", "a\u{7}", "a\u{85}", "a\u{9f}", "a\u{a0}", &x100, &x101, "ключ"],
        );
        agree(
            "RegisterRequest",
            "username",
            |v| Username::parse(v).map(drop),
            &["ada", "ab", "a_b", "a-b", "äbc", " ada", &long("x", 20), &long("x", 21)],
        );
        agree(
            "RegisterRequest",
            "password",
            |v| Password::parse(v).map(drop),
            &[
                "Passw0rd",
                "password1",
                "PASSWORD1",
                "Password",
                "Pa1",
                "ÄÖÜäöü12",
                "Pass word 1",
                &format!("Pa1{}", long("x", 125)),
                &format!("Pa1{}", long("x", 126)),
            ],
        );
        agree(
            "LoginRequest",
            "password",
            |v| Password::attempt(v).map(drop),
            &["x", "", &long("x", 128), &long("x", 129)],
        );
        // Surrounding white space, which the domain trims from an address, is left out here: the
        // document declares the address itself (format email), and says in words that white
        // space around it is ignored.
        let local = long("a", 64);
        let at_most = format!("{local}@{}.{}.{}.com", long("b", 60), long("c", 60), long("d", 60));
        agree(
            "RegisterRequest",
            "email",
            |v| Email::parse(v).map(drop),
            &[
                "ada@example.com",
                "Ada.Lovelace+chat@mail.example.co",
                "a@b",
                "a@b.c",
                "a..b@c.de",
                ".a@b.co",
                "a@-b.co",
                "a@b-.co",
                "a@b.c0",
                "a@b..co",
                "@b.co",
                "a b@c.de",
                "a@b@c.de",
                &at_most,
            ],
        );
    }

    #[test]
    #[should_panic(expected = "breaks asyncapi.yaml")]
    fn a_frame_with_a_null_string_is_refused() {
        check_frame(&json!({"type": "typing", "roomId": "0192f000-0000-7000-8000-000000000000",
            "user": {"id": "0192f000-0000-7000-8000-000000000001", "username": null}}));
    }

    #[test]
    fn every_server_frame_has_a_schema() {
        check_frame(&json!({"type": "pong", "ref": "r1"}));
        assert_eq!(FRAMES.len(), 14);
    }

    #[test]
    #[should_panic(expected = "is not one of")]
    fn a_problem_must_be_problem_json() {
        let problem = json!({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "room not found",
            "code": "ROOM_NOT_FOUND", "requestId": "r"});
        check_response("/chat/room/x", StatusCode::NOT_FOUND, Some("application/json"), &problem);
    }
}
