//! What the load programs of `make bench` share: users sending requests back to back, latency
//! percentiles, and a plain tokio-tungstenite client socket, opened with a bearer token and read
//! frame by frame.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
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
    // Nagle's algorithm off, as browsers have it: a frame is not held back for the server's
    // acknowledgement of the one before.
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true).await.expect("upgrade");
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

/// Each user makes `request(user, n)` (n counting its own requests) back to back until
/// `deadline`; returns every successful request's latency and how many failed. A request
/// succeeds when it answers a 2xx with its whole body.
pub async fn back_to_back<'a, U, F, Fut>(
    users: &'a [U],
    deadline: Instant,
    request: F,
) -> (Vec<Duration>, usize)
where
    F: Fn(&'a U, usize) -> Fut + Copy,
    Fut: Future<Output = reqwest::Result<reqwest::Response>>,
{
    let workers = users.iter().map(|user| async move {
        let (mut latencies, mut failed) = (Vec::new(), 0);
        while Instant::now() < deadline {
            let sent = Instant::now();
            let ok = match request(user, latencies.len() + failed).await {
                Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                Err(_) => false,
            };
            if ok {
                latencies.push(sent.elapsed());
            } else {
                failed += 1;
            }
        }
        (latencies, failed)
    });
    let outcomes = join_all(workers).await;
    let failed = outcomes.iter().map(|(_, failed)| failed).sum();
    (outcomes.into_iter().flat_map(|(latencies, _)| latencies).collect(), failed)
}

/// The `p` quantile (0..=1) of `sorted`, in milliseconds; NaN when there is no sample.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(index).map_or(f64::NAN, |latency| latency.as_secs_f64() * 1000.0)
}

/// Registers `{prefix}_0` .. `{prefix}_{count-1}`, a few at a time: a crowd of registrations at
/// once (each one a password hash) starves the server's other work, which is not what the
/// benches measure.
pub async fn register_all(app: &crate::TestApp, prefix: &str, count: usize) -> Vec<crate::TestUser> {
    futures_util::stream::iter(0..count)
        .map(|n| async move { app.register(&format!("{prefix}_{n}")).await })
        .buffered(8)
        .collect()
        .await
}

/// A joined subscriber's socket, read straight off TCP: the frames a busy room sends are
/// parsed in place, with no allocation, copy or message object per frame, so that the load
/// generator's reading of a million frames a second costs a fraction of what a full WebSocket
/// client costs, leaving the shared cores to the server being measured. It understands what
/// the server sends: unfragmented, unmasked frames. Pings are answered; anything else ends it.
pub struct RawFrames {
    /// Only its TCP stream is used from now on.
    socket: Socket,
    /// Bytes read and not parsed yet, from `start`.
    buffer: Vec<u8>,
    start: usize,
}

/// Bytes read at most at once.
const RAW_READ: usize = 64 * 1024;

impl RawFrames {
    /// Takes over a socket that has joined its room and is not sent anything until then.
    /// Panics on a TLS socket (the benches speak plain TCP).
    pub fn new(socket: Socket) -> Self {
        assert!(matches!(socket.get_ref(), MaybeTlsStream::Plain(_)), "the benches speak plain TCP");
        Self { socket, buffer: Vec::with_capacity(2 * RAW_READ), start: 0 }
    }

    /// Waits for bytes, then hands every complete text frame to `each`; `false` once the
    /// socket is closed, failed or sent something it should not have.
    pub async fn read(&mut self, mut each: impl FnMut(&str)) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        let MaybeTlsStream::Plain(tcp) = self.socket.get_mut() else { return false };
        self.buffer.reserve(RAW_READ);
        match tcp.read_buf(&mut self.buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        let mut pong = None;
        while let Some((opcode, payload, length)) = frame_at(&self.buffer[self.start..]) {
            match opcode {
                0x1 => match std::str::from_utf8(payload) {
                    Ok(text) => each(text),
                    Err(_) => return false,
                },
                0x9 => pong = Some(payload.to_vec()),
                0xA => {}
                _ => return false,
            }
            self.start += length;
        }
        if let Some(payload) = pong {
            // A client's frame is masked: a zero key leaves the payload as it is.
            let mut frame = vec![0x8A, 0x80 | payload.len() as u8, 0, 0, 0, 0];
            frame.extend_from_slice(&payload);
            if tcp.write_all(&frame).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// The first frame of `bytes` if it is complete: its opcode, its payload and its whole length.
fn frame_at(bytes: &[u8]) -> Option<(u8, &[u8], usize)> {
    let (&first, &second) = (bytes.first()?, bytes.get(1)?);
    let (length, header) = match second & 0x7F {
        126 => (u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize, 10),
        short => (short as usize, 2),
    };
    let payload = bytes.get(header..header + length)?;
    Some((first & 0x0F, payload, header + length))
}

/// One keep-alive HTTP/1.1 connection that sends a prepared `GET` and reads each response
/// straight off TCP, as `wrk` would: no request building, header map or body stream per
/// request. A history read's generator side cost more CPU through reqwest than the server's
/// answer did, on the same two cores. It understands what the server sends: a status line,
/// headers with `content-length`, and that many bytes of body.
pub struct RawGet {
    tcp: TcpStream,
    request: Vec<u8>,
    buffer: Vec<u8>,
}

impl RawGet {
    /// Connects to `address` (`host:port`) to send `GET path` with the bearer `token`.
    pub async fn connect(address: &str, path: &str, token: &str) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(address).await?;
        tcp.set_nodelay(true)?;
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\n\r\n")
                .into_bytes();
        Ok(Self { tcp, request, buffer: Vec::with_capacity(64 * 1024) })
    }

    /// Sends the request and reads its whole response: `Ok(true)` for a 200, `Ok(false)` for
    /// another status; an error if the connection failed or the response is not one it reads.
    pub async fn get(&mut self) -> std::io::Result<bool> {
        use tokio::io::AsyncWriteExt;

        self.tcp.write_all(&self.request).await?;
        self.buffer.clear();
        let head = loop {
            if let Some(end) = self.buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                break end + 4;
            }
            self.read_more().await?;
        };
        let (ok, length) = response_head(&self.buffer[..head])
            .ok_or_else(|| std::io::Error::other("a response without a status or content-length"))?;
        while self.buffer.len() < head + length {
            self.read_more().await?;
        }
        if self.buffer.len() > head + length {
            return Err(std::io::Error::other("more bytes than the response holds"));
        }
        Ok(ok)
    }

    async fn read_more(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncReadExt;

        self.buffer.reserve(16 * 1024);
        match self.tcp.read_buf(&mut self.buffer).await? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }
}

/// Whether the head is a 200, and its `content-length`.
fn response_head(head: &[u8]) -> Option<(bool, usize)> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?;
    let length = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
    })?;
    Some((status == "200", length))
}

#[cfg(test)]
mod tests {
    use super::response_head;

    #[test]
    fn a_response_head_gives_its_status_and_length() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 42\r\n\r\n";
        assert_eq!(response_head(head), Some((true, 42)));
        let refused = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 7\r\n\r\n";
        assert_eq!(response_head(refused), Some((false, 7)));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(response_head(chunked), None);
    }
}
