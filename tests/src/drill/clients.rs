//! The traffic of a drill: clients that behave as a well-written client would under faults.
//! Senders retry a send that got no answer with the same `clientMessageId` (on whichever
//! instance answers), log in again when their session is gone, and move to the other instance
//! when theirs refuses connections. Subscribers resume with `join` + `sinceSeq` after any close
//! and record every message frame, so that the drill can check order, gaps and duplicates.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a client waits for any one answer before it gives up on it and retries.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between two sends of a sender.
pub const SEND_INTERVAL: Duration = Duration::from_millis(20);
/// The pause before a failed attempt is made again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A user's credentials and current token.
#[derive(Debug, Clone)]
pub struct Account {
    pub email: String,
    pub password: String,
    pub token: String,
}

impl Account {
    /// Logs in again on `base_url`; `false` if that failed (the caller retries later).
    async fn log_in_again(&mut self, http: &reqwest::Client, base_url: &str) -> bool {
        let response = http
            .post(format!("{base_url}/auth/login"))
            .json(&json!({"email": self.email, "password": self.password}))
            .send()
            .await;
        let Ok(response) = response else { return false };
        if !response.status().is_success() {
            return false;
        }
        let Ok(body) = response.json::<Value>().await else { return false };
        match body["access_token"].as_str() {
            Some(token) => {
                self.token = token.to_owned();
                true
            }
            None => false,
        }
    }
}

/// The instances a client may use, in its order of preference, and the one it is on.
#[derive(Debug, Clone)]
pub struct Route {
    urls: Vec<String>,
    current: usize,
}

impl Route {
    pub fn new(urls: Vec<String>) -> Route {
        Route { urls, current: 0 }
    }

    fn url(&self) -> &str {
        &self.urls[self.current]
    }

    /// The current instance refused the connection: try the next one.
    fn move_on(&mut self) {
        self.current = (self.current + 1) % self.urls.len();
    }
}

/// An acknowledged send.
#[derive(Debug, Clone)]
pub struct Ack {
    pub content: String,
    pub seq: i64,
    pub at: Instant,
    /// The instance that acknowledged it.
    pub via: String,
}

/// Why a socket ended, as a subscriber or sender saw it.
#[derive(Debug, Clone)]
pub struct Closed {
    /// The close code, or 1006 when the connection ended without a close frame.
    pub code: u16,
    pub at: Instant,
    pub instance: String,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// `(seq, content, received at)` of every message frame, in arrival order.
    pub messages: Vec<(i64, String, Instant)>,
    /// The highest seq received.
    pub last_seq: i64,
    /// Frames whose seq skipped ahead of the one expected: `(expected, got)`.
    pub gaps: Vec<(i64, i64)>,
    /// Frames with a seq already received.
    pub duplicates: usize,
    pub closes: Vec<Closed>,
    /// A join answered `truncated`.
    pub truncated: bool,
}

/// Opens a socket on the route's current instance and reads `ready`. `None` (after logging in
/// again or moving on as the refusal calls for) when that failed.
async fn connect(http: &reqwest::Client, route: &mut Route, account: &mut Account) -> Option<Socket> {
    let url = format!("{}/ws", route.url().replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", account.token).parse().expect("header"));
    match tokio::time::timeout(ANSWER_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((mut socket, _))) => match next_text(&mut socket).await {
            Ok(frame) if frame["type"] == "ready" => Some(socket),
            _ => None,
        },
        Ok(Err(tungstenite::Error::Http(response))) => {
            if response.status() == 401 {
                account.log_in_again(http, route.url()).await;
            }
            None
        }
        Ok(Err(_)) => {
            route.move_on();
            None
        }
        Err(_) => None,
    }
}

/// The next text frame as JSON; `Err` with the close code when the socket ended (1006 without
/// a close frame, 0 on a read timeout).
async fn next_text(socket: &mut Socket) -> Result<Value, u16> {
    loop {
        match tokio::time::timeout(ANSWER_TIMEOUT, socket.next()).await {
            Err(_) => return Err(0),
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).map_err(|_| 1006),
            Ok(Some(Ok(Message::Close(Some(CloseFrame { code, .. }))))) => return Err(code.into()),
            Ok(Some(Ok(Message::Close(None)))) => return Err(1005),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return Err(1006),
        }
    }
}

/// Sends `{prefix}-0`, `{prefix}-1`, ... over WebSocket, one at a time, until `stop`; each is
/// retried with the same `clientMessageId` until acknowledged.
pub async fn ws_sender(
    mut account: Account,
    mut route: Route,
    room: String,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    closes: Arc<Mutex<Vec<Closed>>>,
) {
    let http = reqwest::Client::builder().timeout(ANSWER_TIMEOUT).build().expect("client");
    let mut n = 0;
    'connection: while !stop.load(Ordering::SeqCst) {
        let Some(mut socket) = connect(&http, &mut route, &mut account).await else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        while !stop.load(Ordering::SeqCst) {
            let id = format!("ws-{n}");
            let frame =
                json!({"type": "send", "roomId": room, "content": id, "clientMessageId": id, "ref": id});
            if socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                closes.lock().unwrap().push(Closed {
                    code: 1006,
                    at: Instant::now(),
                    instance: route.url().into(),
                });
                continue 'connection;
            }
            loop {
                match next_text(&mut socket).await {
                    Ok(frame) if frame["type"] == "ack" && frame["ref"] == id.as_str() => {
                        let seq = frame["message"]["seq"].as_i64().expect("seq in ack");
                        let ack =
                            Ack { content: id.clone(), seq, at: Instant::now(), via: route.url().into() };
                        acks.lock().unwrap().push(ack);
                        n += 1;
                        tokio::time::sleep(SEND_INTERVAL).await;
                        break;
                    }
                    Ok(frame) if frame["type"] == "error" && frame["ref"] == id.as_str() => {
                        // Refused for now (the database is away, say): the same send again.
                        tokio::time::sleep(RETRY_PAUSE).await;
                        break;
                    }
                    Ok(_) => {}
                    Err(code) => {
                        closes.lock().unwrap().push(Closed {
                            code,
                            at: Instant::now(),
                            instance: route.url().into(),
                        });
                        continue 'connection;
                    }
                }
            }
        }
        let _ = socket.close(None).await;
    }
}

/// Sends `{prefix}-0`, `{prefix}-1`, ... with `POST /chat/message` until `stop`, each retried
/// with the same `clientMessageId` until acknowledged (201, or 200 for a retry).
pub async fn rest_sender(
    mut account: Account,
    mut route: Route,
    room: String,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
) {
    let http = reqwest::Client::builder().timeout(ANSWER_TIMEOUT).build().expect("client");
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let id = format!("rest-{n}");
        let response = http
            .post(format!("{}/chat/message", route.url()))
            .bearer_auth(&account.token)
            .json(&json!({"roomId": room, "content": id, "clientMessageId": id}))
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => {
                let body: Value = response.json().await.unwrap_or_default();
                if let Some(seq) = body["seq"].as_i64() {
                    acks.lock().unwrap().push(Ack {
                        content: id,
                        seq,
                        at: Instant::now(),
                        via: route.url().into(),
                    });
                    n += 1;
                    tokio::time::sleep(SEND_INTERVAL).await;
                }
            }
            Ok(response) if response.status() == 401 => {
                account.log_in_again(&http, route.url()).await;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Ok(_) => tokio::time::sleep(RETRY_PAUSE).await,
            Err(error) => {
                if error.is_connect() {
                    route.move_on();
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Follows `room` until `stop`, joining with `sinceSeq` = the last seq seen after every close.
pub async fn subscriber(
    mut account: Account,
    mut route: Route,
    room: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let http = reqwest::Client::builder().timeout(ANSWER_TIMEOUT).build().expect("client");
    while !stop.load(Ordering::SeqCst) {
        let Some(mut socket) = connect(&http, &mut route, &mut account).await else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        let since = seen.lock().unwrap().last_seq;
        let join = json!({"type": "join", "roomId": room, "sinceSeq": since, "ref": "join"});
        if socket.send(Message::Text(join.to_string().into())).await.is_err() {
            continue;
        }
        while !stop.load(Ordering::SeqCst) {
            let frame = match tokio::time::timeout(Duration::from_millis(200), next_text(&mut socket)).await {
                Err(_) | Ok(Err(0)) => continue,
                Ok(Ok(frame)) => frame,
                Ok(Err(code)) => {
                    let closed = Closed { code, at: Instant::now(), instance: route.url().into() };
                    seen.lock().unwrap().closes.push(closed);
                    break;
                }
            };
            match frame["type"].as_str() {
                Some("message") if frame["message"]["roomId"] == room.as_str() => {
                    let seq = frame["message"]["seq"].as_i64().expect("seq");
                    let content = frame["message"]["content"].as_str().unwrap_or_default().to_owned();
                    let mut seen = seen.lock().unwrap();
                    if seq <= seen.last_seq {
                        seen.duplicates += 1;
                    } else {
                        if seq != seen.last_seq + 1 {
                            let expected = seen.last_seq + 1;
                            seen.gaps.push((expected, seq));
                        }
                        seen.last_seq = seq;
                    }
                    seen.messages.push((seq, content, Instant::now()));
                }
                Some("joined") if frame["truncated"] == true => seen.lock().unwrap().truncated = true,
                Some("error") if frame["ref"] == "join" => {
                    // The join failed for now (a subscription needs Redis): start over.
                    tokio::time::sleep(RETRY_PAUSE).await;
                    break;
                }
                _ => {}
            }
        }
        let _ = socket.close(None).await;
    }
}
