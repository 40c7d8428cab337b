//! Each message's JSON, made once per instance and spliced into every history page that holds
//! it. A page is encoded once per change of the room (the cache shares it among readers; see
//! `json_body`); with this, a change re-encodes only the messages it brought, not the page's
//! fifty: a busy room's readers get a new page after every send.
//!
//! The memo keeps the message it encoded beside its JSON and hands the JSON out only for an
//! equal message, so an edit (or anything else about a message) can never be served stale. It
//! is bounded: two generations of at most [`GENERATION`] messages; when the current one fills
//! up it becomes the previous one and the one before is dropped, so a message read now and
//! then stays and one nobody reads leaves.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;
use convo_domain::{HistoryPage, MessageId, lock};

use crate::messages::Message;

/// Messages per generation of the memo (two generations in all).
pub const GENERATION: usize = 4096;

/// The instance's memo: a deterministic function's results, so one for the whole process.
static MEMO: LazyLock<Mutex<Memo>> = LazyLock::new(Mutex::default);

/// `page` as its JSON body, `{"messages":[…],"hasMore":…}`, byte for byte what serializing a
/// [`crate::messages::MessagePage`] of it writes.
pub fn page_body(page: &HistoryPage) -> serde_json::Result<Bytes> {
    lock(&MEMO).page_body(page)
}

/// Messages and their JSON; see the module docs.
#[derive(Default)]
pub struct Memo {
    current: HashMap<MessageId, Encoded>,
    previous: HashMap<MessageId, Encoded>,
}

/// A message as it was when encoded, and its JSON.
struct Encoded {
    message: convo_domain::Message,
    json: Bytes,
}

impl Memo {
    /// The page's body, from the messages' kept JSON (encoding those not kept or changed).
    pub fn page_body(&mut self, page: &HistoryPage) -> serde_json::Result<Bytes> {
        let mut body = Vec::with_capacity(32 + page.messages.len() * 320);
        body.extend_from_slice(br#"{"messages":["#);
        for (index, message) in page.messages.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&self.json_of(message)?);
        }
        body.extend_from_slice(if page.has_more {
            br#"],"hasMore":true}"#
        } else {
            br#"],"hasMore":false}"#
        });
        Ok(body.into())
    }

    /// The message's JSON: kept if the message is as it was when encoded, made and kept if not.
    fn json_of(&mut self, message: &convo_domain::Message) -> serde_json::Result<Bytes> {
        if let Some(kept) = self.current.get(&message.id).filter(|kept| kept.message == *message) {
            return Ok(kept.json.clone());
        }
        let encoded = match self.previous.remove(&message.id).filter(|kept| kept.message == *message) {
            Some(kept) => kept,
            None => Encoded {
                message: message.clone(),
                json: serde_json::to_vec(&Message::from(message.clone()))?.into(),
            },
        };
        let json = encoded.json.clone();
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(message.id, encoded);
        Ok(json)
    }

    /// How many messages are kept.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use convo_contract::fixture;
    use convo_domain::{MessageContent, RoomId};

    use super::*;
    use crate::messages::MessagePage;

    /// A stored message whose content needs escaping.
    fn stored(room: RoomId, seq: i64) -> convo_domain::Message {
        convo_domain::Message {
            content: MessageContent::from_trusted(format!("message \"{seq}\" ✓")),
            ..fixture::message(room, seq)
        }
    }

    fn serialized(page: &HistoryPage) -> Vec<u8> {
        let page = MessagePage {
            messages: page.messages.iter().cloned().map(Into::into).collect(),
            has_more: page.has_more,
        };
        serde_json::to_vec(&page).expect("serializes")
    }

    #[test]
    fn a_spliced_page_is_byte_for_byte_the_serialized_page() {
        let room = RoomId::generate();
        let mut memo = Memo::default();
        for (messages, has_more) in
            [(vec![], false), (vec![stored(room, 1)], true), (vec![stored(room, 2), stored(room, 3)], false)]
        {
            let page = HistoryPage::new(messages, has_more);
            assert_eq!(memo.page_body(&page).expect("encodes"), serialized(&page));
        }
    }

    #[test]
    fn a_message_is_encoded_once_for_every_page_that_holds_it() {
        let room = RoomId::generate();
        let mut memo = Memo::default();
        let (first, second, third) = (stored(room, 1), stored(room, 2), stored(room, 3));
        let before = HistoryPage::new(vec![first.clone(), second.clone()], false);
        memo.page_body(&before).expect("encodes");
        let kept = memo.json_of(&second).expect("encodes");
        // A send later: the page moves on, the messages it shares keep their JSON.
        let after = HistoryPage::new(vec![second.clone(), third], false);
        assert_eq!(memo.page_body(&after).expect("encodes"), serialized(&after));
        assert_eq!(memo.json_of(&second).expect("encodes").as_ptr(), kept.as_ptr(), "not encoded again");
        assert_eq!(memo.len(), 3);
    }

    #[test]
    fn an_edited_message_is_never_served_as_it_was() {
        let room = RoomId::generate();
        let mut memo = Memo::default();
        let message = stored(room, 1);
        memo.page_body(&HistoryPage::new(vec![message.clone()], false)).expect("encodes");
        let mut edited = message;
        edited.content = MessageContent::from_trusted("edited".to_owned());
        edited.edited_at = Some(Utc::now());
        let page = HistoryPage::new(vec![edited], false);
        let body = memo.page_body(&page).expect("encodes");
        assert_eq!(body, serialized(&page));
        assert!(String::from_utf8_lossy(&body).contains(r#""content":"edited""#));
    }

    #[test]
    fn the_memo_keeps_at_most_two_generations() {
        let room = RoomId::generate();
        let mut memo = Memo::default();
        let first = stored(room, 0);
        memo.json_of(&first).expect("encodes");
        for seq in 1..=(3 * GENERATION as i64) {
            memo.json_of(&stored(room, seq)).expect("encodes");
            // A message read now and then stays.
            if seq % 1000 == 0 {
                memo.json_of(&first).expect("encodes");
            }
            assert!(memo.len() <= 2 * GENERATION);
        }
        assert!(memo.current.contains_key(&first.id) || memo.previous.contains_key(&first.id));
    }
}
