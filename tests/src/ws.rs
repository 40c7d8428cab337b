//! A WebSocket client for the black-box tests: connect as a user, send frames, and read them
//! back with a timeout so that a missing frame fails the test instead of hanging it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::TestApp;

/// How long a test waits for a frame it expects.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `ready` frame the server opened with.
    pub ready: Value,
}

/// Why a connection attempt failed: the HTTP status of a refused upgrade.
pub type Refusal = u16;

impl WsClient {
    /// Connects with a bearer token and reads the `ready` frame.
    pub async fn connect(app: &TestApp, token: &str) -> WsClient {
        Self::try_connect(app, Some(token), None).await.expect("upgrade accepted")
    }

    /// Connects with a tiny socket receive buffer, so that a client that stops reading makes
    /// the server's writes back up quickly.
    pub async fn connect_reading_slowly(app: &TestApp, token: &str) -> WsClient {
        let address = app.base_url.trim_start_matches("http://").parse().expect("socket address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("small buffer");
        let tcp = socket.connect(address).await.expect("connect");
        let mut request = format!("ws://{address}/ws").into_client_request().expect("request");
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
        let (stream, _) =
            tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)).await.expect("upgrade");
        let mut client = WsClient { stream, ready: Value::Null };
        client.ready = client.recv().await;
        client
    }

    /// Connects with `?ticket=`.
    pub async fn connect_with_ticket(app: &TestApp, ticket: &str) -> Result<WsClient, Refusal> {
        Self::try_connect(app, None, Some(ticket)).await
    }

    pub async fn try_connect(
        app: &TestApp,
        token: Option<&str>,
        ticket: Option<&str>,
    ) -> Result<WsClient, Refusal> {
        let base = app.base_url.replacen("http://", "ws://", 1);
        let url = match ticket {
            Some(ticket) => format!("{base}/ws?ticket={ticket}"),
            None => format!("{base}/ws"),
        };
        let mut request = url.into_client_request().expect("request");
        if let Some(token) = token {
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, _)) => {
                let mut client = WsClient { stream, ready: Value::Null };
                let ready = client.recv().await;
                assert_eq!(ready["type"], "ready", "{ready}");
                client.ready = ready;
                Ok(client)
            }
            Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
            Err(other) => panic!("connect failed: {other}"),
        }
    }

    /// Sends one frame (a JSON value).
    pub async fn send(&mut self, frame: Value) {
        self.stream.send(Message::Text(frame.to_string().into())).await.expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.expect("send");
    }

    /// The next frame of any kind; fails if the connection ends or after [`FRAME_TIMEOUT`].
    pub async fn recv_message(&mut self) -> Message {
        let next = tokio::time::timeout(FRAME_TIMEOUT, self.stream.next()).await.expect("a frame in time");
        next.expect("the connection is open").expect("a valid frame")
    }

    /// The next text frame, as JSON; fails on a close or after [`FRAME_TIMEOUT`].
    pub async fn recv(&mut self) -> Value {
        loop {
            let next =
                tokio::time::timeout(FRAME_TIMEOUT, self.stream.next()).await.expect("a frame in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                    crate::contract::check_frame(&frame);
                    return frame;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame of type `kind`, skipping presence and typing noise.
    pub async fn recv_kind(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
            let noise = frame["type"] == "presence" || frame["type"] == "typing";
            assert!(noise, "expected a {kind} frame, got {frame}");
        }
    }

    /// Asserts that no frame of these kinds arrives within `wait` (others are skipped).
    pub async fn expect_none(&mut self, kinds: &[&str], wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(next) = tokio::time::timeout_at(deadline, self.stream.next()).await {
            if let Some(Ok(Message::Text(text))) = next {
                let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                crate::contract::check_frame(&frame);
                let kind = frame["type"].as_str().unwrap_or_default();
                assert!(!kinds.contains(&kind), "unexpected frame {frame}");
            } else if !matches!(next, Some(Ok(Message::Ping(_) | Message::Pong(_)))) {
                panic!("unexpected {next:?}");
            }
        }
    }

    /// Reads until the server closes; returns the close code (frames before it are skipped).
    pub async fn expect_close(&mut self) -> u16 {
        self.expect_close_within(FRAME_TIMEOUT).await
    }

    /// [`WsClient::expect_close`], waiting up to `wait`.
    pub async fn expect_close_within(&mut self, wait: Duration) -> u16 {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await.expect("a close in time");
            match next {
                Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => return code.into(),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("connection failed before a close frame: {error}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Joins a room and returns the `joined` frame (replayed messages before it are returned
    /// too, in order).
    pub async fn join(&mut self, room: &str, since: Option<i64>) -> (Vec<Value>, Value) {
        let mut frame = serde_json::json!({"type": "join", "roomId": room, "ref": "join"});
        if let Some(since) = since {
            frame["sinceSeq"] = since.into();
        }
        self.send(frame).await;
        let mut replayed = Vec::new();
        loop {
            let frame = self.recv().await;
            match frame["type"].as_str() {
                Some("joined") => return (replayed, frame),
                Some("message") => replayed.push(frame),
                Some("presence" | "typing") => {}
                _ => panic!("unexpected frame while joining: {frame}"),
            }
        }
    }
}

/// A client that completes the upgrade by hand and then never writes again: it answers no ping,
/// as a vanished client would not. Returns the raw socket.
pub async fn silent_client(app: &TestApp, token: &str) -> TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base_url.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(address).await.expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.expect("response"));
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    tcp
}

/// Reads raw server frames until the socket ends; returns the code of the close frame in them.
pub async fn raw_close_code(tcp: &mut TcpStream, wait: Duration) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(wait, tcp.read_to_end(&mut bytes)).await;
    // Server frames are unmasked: a close frame is 0x88, its length, then the code.
    bytes
        .windows(4)
        .find(|w| w[0] == 0x88 && w[1] >= 2 && w[1] < 126)
        .map(|w| u16::from_be_bytes([w[2], w[3]]))
}
