//! What the load programs of `make bench` share: a plain tokio-tungstenite client socket,
//! opened with a bearer token and read frame by frame.

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client WebSocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Upgrades `url` (`ws://host:port/ws`) with the token and reads the `ready` frame.
pub async fn open_socket(url: &str, token: &str, config: WebSocketConfig) -> Socket {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), false).await.expect("upgrade");
    next_text(&mut socket).await; // ready
    socket
}

/// The next text frame; control frames are skipped.
pub async fn next_text(socket: &mut Socket) -> String {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// Subscribes the socket to `room` and waits for `joined`.
pub async fn join(socket: &mut Socket, room: &str) {
    let frame = json!({"type": "join", "roomId": room, "ref": "join"});
    socket.send(Message::Text(frame.to_string().into())).await.expect("send");
    while !next_text(socket).await.contains(r#""type":"joined""#) {}
}
