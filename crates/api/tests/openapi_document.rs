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
