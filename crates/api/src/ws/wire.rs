//! Server frames in their wire form. A server never masks its frames, so a frame's bytes are the
//! same on every connection: the hub frames an event once, where it encodes it, and a run of
//! events once for all its recipients; each connection's writer then only hands those shared
//! bytes to its socket. Framing per connection (tungstenite's write path, which formats each
//! frame into the socket's buffer) was the largest cost of fan-out after the kernel's.

use bytes::{Bytes, BytesMut};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

/// One or more whole frames, ready to be written as they are; cloned by reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    bytes: Bytes,
    frames: usize,
}

impl Wire {
    /// One text frame.
    pub fn text(text: &str) -> Self {
        let header = FrameHeader { opcode: OpCode::Data(Data::Text), ..FrameHeader::default() };
        let length = text.len() as u64;
        let mut bytes = Vec::with_capacity(header.len(length) + text.len());
        // Writing into a Vec cannot fail.
        let _ = header.format(length, &mut bytes);
        bytes.extend_from_slice(text.as_bytes());
        Self { bytes: bytes.into(), frames: 1 }
    }

    pub fn ping() -> Self {
        Self::of(Frame::ping(Bytes::new()))
    }

    /// The answer to a client's ping, with its payload.
    pub fn pong(payload: Bytes) -> Self {
        Self::of(Frame::pong(payload))
    }

    /// A close frame; `None` for one without a code (the answer to a close that had none).
    pub fn close(code: Option<u16>, reason: &'static str) -> Self {
        let close = code
            .map(|code| CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from_static(reason) });
        Self::of(Frame::close(close))
    }

    /// The frames of `parts`, in order, as one item.
    pub fn run<'a>(parts: impl IntoIterator<Item = &'a Wire>) -> Self {
        let mut bytes = BytesMut::new();
        let mut frames = 0;
        for part in parts {
            bytes.extend_from_slice(&part.bytes);
            frames += part.frames;
        }
        Self { bytes: bytes.freeze(), frames }
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// How many frames these bytes hold.
    pub fn frames(&self) -> usize {
        self.frames
    }

    fn of(frame: Frame) -> Self {
        let mut bytes = Vec::with_capacity(frame.len());
        // Writing into a Vec cannot fail.
        let _ = frame.format(&mut bytes);
        Self { bytes: bytes.into(), frames: 1 }
    }
}

/// The frames in `bytes`, for tests: the opcode and payload of each, as a client reads them.
#[cfg(test)]
pub fn parse(bytes: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
    use std::io::Cursor;

    let mut cursor = Cursor::new(bytes);
    let mut frames = Vec::new();
    while (cursor.position() as usize) < bytes.len() {
        let (header, length) =
            FrameHeader::parse(&mut cursor).expect("a valid header").expect("a whole header");
        assert!(header.is_final && header.mask.is_none(), "a server frame is final and unmasked");
        let start = cursor.position() as usize;
        let end = start + length as usize;
        frames.push((header.opcode, bytes[start..end].to_vec()));
        cursor.set_position(end as u64);
    }
    frames
}

/// The text of each frame in `bytes`, for tests; panics on any other frame.
#[cfg(test)]
pub fn texts(bytes: &[u8]) -> Vec<String> {
    parse(bytes)
        .into_iter()
        .map(|(opcode, payload)| {
            assert_eq!(opcode, OpCode::Data(Data::Text), "a text frame");
            String::from_utf8(payload).expect("UTF-8 text")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::Control;

    use super::*;

    #[test]
    fn a_text_frame_reads_back_as_its_text_at_every_length_encoding() {
        for length in [0, 125, 126, 65_535, 65_536] {
            let text = "x".repeat(length);
            assert_eq!(texts(Wire::text(&text).bytes()), [text], "length {length}");
        }
    }

    #[test]
    fn a_run_is_its_frames_in_order_and_counts_them() {
        let run = Wire::run(&[Wire::text("a"), Wire::run(&[Wire::text("b"), Wire::text("c")])]);
        assert_eq!(run.frames(), 3);
        assert_eq!(texts(run.bytes()), ["a", "b", "c"]);
    }

    #[test]
    fn control_frames_carry_their_payloads() {
        assert_eq!(parse(Wire::ping().bytes()), [(OpCode::Control(Control::Ping), vec![])]);
        assert_eq!(
            parse(Wire::pong(Bytes::from_static(b"hi")).bytes()),
            [(OpCode::Control(Control::Pong), b"hi".to_vec())]
        );
        let mut close = 4001u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"session ended");
        assert_eq!(
            parse(Wire::close(Some(4001), "session ended").bytes()),
            [(OpCode::Control(Control::Close), close)]
        );
        assert_eq!(parse(Wire::close(None, "").bytes()), [(OpCode::Control(Control::Close), vec![])]);
    }
}
