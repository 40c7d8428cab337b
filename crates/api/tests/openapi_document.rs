//! The committed OpenAPI document (`openapi/openapi.json`) must be exactly what the code serves;
//! generated clients are built from the file. `make openapi` rewrites it.

use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json")
}

#[test]
fn committed_document_matches_the_code() {
    let generated = convo_api::openapi_json();
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write openapi/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json differs from the code: run `make openapi` and commit the result"
    );
}

#[test]
fn document_names_what_generated_clients_rely_on() {
    let document: serde_json::Value = serde_json::from_str(&convo_api::openapi_json()).expect("valid JSON");
    let scheme = &document["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");

    let operation_ids: Vec<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .filter_map(|operation| operation["operationId"].as_str())
        .collect();
    for expected in [
        "register",
        "login",
        "logout",
        "logoutAll",
        "getCurrentUser",
        "createRoom",
        "listMyRooms",
        "searchRooms",
        "getRoom",
        "joinRoom",
        "leaveRoom",
        "listRoomMembers",
        "sendMessage",
        "listMessages",
        "editMessage",
        "deleteMessage",
        "getHealth",
        "getReadiness",
    ] {
        assert!(operation_ids.contains(&expected), "missing operationId {expected}");
    }

    let send = &document["paths"]["/chat/message"]["post"]["responses"];
    for status in ["200", "201", "400", "401", "403", "404", "413", "429", "500", "503"] {
        assert!(send.get(status).is_some(), "sendMessage does not declare {status}");
    }
    assert!(send["429"]["headers"]["Retry-After"].is_object());
    assert!(
        send["404"]["content"]["application/problem+json"]["schema"]["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("/Problem"))
    );
    for schema in [
        "AuthResponse",
        "User",
        "Room",
        "RoomSummary",
        "Member",
        "Message",
        "MessagePage",
        "Problem",
        "ErrorCode",
    ] {
        assert!(document["components"]["schemas"].get(schema).is_some(), "missing schema {schema}");
    }
}

/// The names of the component schemas `value` refers to, directly or through other schemas.
fn referenced_schemas(document: &serde_json::Value, value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(name) = map.get("$ref").and_then(|r| r.as_str()).and_then(|r| r.rsplit('/').next())
                && !found.iter().any(|known| known == name)
            {
                found.push(name.to_owned());
                referenced_schemas(document, &document["components"]["schemas"][name], found);
            }
            for nested in map.values() {
                referenced_schemas(document, nested, found);
            }
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|item| referenced_schemas(document, item, found))
        }
        _ => {}
    }
}

#[test]
fn every_response_field_that_may_be_absent_is_declared_nullable() {
    // The server writes an absent optional value as null (`"editedAt": null`), never leaves the
    // field out, so a generated client must be told that null is a valid value.
    let document: serde_json::Value = serde_json::from_str(&convo_api::openapi_json()).expect("valid JSON");
    let mut in_responses = Vec::new();
    for item in document["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("path item").values() {
            referenced_schemas(&document, &operation["responses"], &mut in_responses);
        }
    }
    assert!(in_responses.iter().any(|name| name == "Message"), "{in_responses:?}");
    let mut checked = 0;
    for name in &in_responses {
        let schema = &document["components"]["schemas"][name.as_str()];
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|f| f.as_str()).collect())
            .unwrap_or_default();
        for (field, property) in schema["properties"].as_object().into_iter().flatten() {
            if !required.contains(&field.as_str()) {
                checked += 1;
                assert_eq!(
                    property["nullable"], true,
                    "{name}.{field} may be null but is not declared nullable"
                );
            }
        }
    }
    assert!(checked >= 3, "editedAt, clientMessageId and lastMessageAt at least; checked {checked}");
}

#[test]
fn the_validation_rules_of_the_contract_are_declared() {
    let document: serde_json::Value = serde_json::from_str(&convo_api::openapi_json()).expect("valid JSON");
    let schemas = &document["components"]["schemas"];
    let field = |schema: &str, name: &str| schemas[schema]["properties"][name].clone();

    let email = field("RegisterRequest", "email");
    assert_eq!((email["format"].as_str(), email["maxLength"].as_u64()), (Some("email"), Some(254)));
    assert_eq!(field("LoginRequest", "email")["pattern"], email["pattern"]);
    let username = field("RegisterRequest", "username");
    assert_eq!((username["minLength"].as_u64(), username["maxLength"].as_u64()), (Some(3), Some(20)));
    assert_eq!(username["pattern"], "^[A-Za-z0-9_]{3,20}$");
    let password = field("RegisterRequest", "password");
    assert_eq!((password["minLength"].as_u64(), password["maxLength"].as_u64()), (Some(8), Some(128)));
    assert!(password["pattern"].as_str().is_some_and(|p| p.contains(r"\p{Lu}") && p.contains(r"\p{Ll}")));
    let attempt = field("LoginRequest", "password");
    assert_eq!((attempt["minLength"].as_u64(), attempt["maxLength"].as_u64()), (Some(1), Some(128)));

    let room_name = field("CreateRoomRequest", "name");
    assert!(
        room_name["pattern"].as_str().is_some_and(|p| p.contains(r"[\p{L}\p{N} _-]{0,48}")),
        "{room_name}"
    );
    assert_eq!(field("MessageToRoomName", "chatRoomName")["pattern"], room_name["pattern"]);
    let content = field("EditMessageRequest", "content");
    assert!(content["pattern"].as_str().is_some_and(|p| p.contains("{0,998}")), "{content}");
    for variant in ["MessageToRoomId", "MessageToRoomName"] {
        assert_eq!(field(variant, "content")["pattern"], content["pattern"]);
        let key = field(variant, "clientMessageId");
        assert_eq!((key["minLength"].as_u64(), key["maxLength"].as_u64()), (Some(1), Some(100)));
        assert_eq!(key["nullable"], true);
    }

    // A message names its room by id or by name: exactly one of two required sets.
    let send = &schemas["SendMessageRequest"];
    let variants: Vec<&str> =
        send["oneOf"].as_array().expect("oneOf").iter().filter_map(|v| v["$ref"].as_str()).collect();
    assert_eq!(variants, ["#/components/schemas/MessageToRoomId", "#/components/schemas/MessageToRoomName"]);
    assert_eq!(schemas["MessageToRoomId"]["required"], serde_json::json!(["roomId", "content"]));
    assert_eq!(schemas["MessageToRoomName"]["required"], serde_json::json!(["chatRoomName", "content"]));

    let parameter = |path: &str, name: &str| {
        document["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"].clone())
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))
    };
    for path in ["/chat/messages", "/chat/directory"] {
        let limit = parameter(path, "limit");
        assert_eq!((limit["minimum"].as_f64(), limit["maximum"].as_f64()), (Some(1.0), Some(100.0)));
        assert_eq!(limit["default"], 50);
    }
    assert_eq!(parameter("/chat/messages", "before")["minimum"].as_f64(), Some(1.0));
    assert_eq!(parameter("/chat/messages", "after")["minimum"].as_f64(), Some(0.0));
    assert_eq!(parameter("/chat/messages", "chatRoomName")["pattern"], room_name["pattern"]);
    assert!(parameter("/chat/directory", "q")["pattern"].as_str().is_some_and(|p| p.contains("{0,49}")));
}
