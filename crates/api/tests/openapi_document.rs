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
