//! The recent-message cache in Redis, shared by every instance: the same rules as the
//! in-process cache of `convo-memory` (see there), each operation one atomic script over the
//! room's three keys (one hash tag, so one cluster slot).
//!
//! Per room, `meta` holds the version (`v`), the highest seq reported (`last`), whether messages
//! are `loaded`, whether they are the `complete` history and how many are held (`n`); `seqs`
//! orders the held ids by seq and `msgs` holds each one's JSON and edit time. Every write report
//! to a held room bumps `v`, and a fill is kept only if `v` still equals its ticket; a kept fill
//! bumps `v` too, so a ticket fills at most once. A room's first version is random (up to 2^52),
//! so a ticket handed out before the room expired cannot match its next life. Idle rooms expire
//! after `cache_idle`; a read starts that time anew only if its instance has not done so for an
//! eighth of it, which spares a busy room three commands per read.
//!
//! Each instance keeps a copy of the pages it served last ([`NEAR_PAGES`] at most), with the
//! version they were read at. A read sends that version along: while the room's version is
//! still the same, the page has not changed, and the script answers "unchanged" instead of the
//! page, so the page is neither sent nor decoded again. The version identifies the room's held
//! messages because every change bumps it (the same reason a fill ticket is safe).
//!
//! A write report that fails (Redis unreachable, or a timeout that leaves it unknown whether it
//! ran) marks the room dirty on this instance: until a background task has invalidated the room
//! in Redis, this instance reads the room from storage, and the invalidation runs as soon as
//! Redis answers again. Every script is idempotent or monotone, so one that runs late after a
//! timeout changes nothing the invalidation did not already account for.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use convo_domain::{
    CachedPage, DomainError, DomainResult, FillTicket, HistoryPage, Message, MessageCache, MessageId,
    RECENT_MESSAGES, RoomId, lock,
};
use fred::prelude::Value;
use fred::types::scripts::Script;
use rand::Rng;
use tokio::task::JoinHandle;

use crate::connection::{RedisConnection, int, malformed};
use crate::session::millis;
use crate::wire::{decode_message, encode_message};

const WHAT: &str = "cache";
/// Dirty rooms remembered at most; past this the oldest reports are dropped (and logged).
const MAX_DIRTY: usize = 100_000;
const REPAIR_EVERY: Duration = Duration::from_millis(250);
/// A ticket no room's version ever equals: versions start at 1 or more.
const NO_TICKET: FillTicket = FillTicket(0);
/// Pages this instance keeps a copy of, to be served again while their room is unchanged. A
/// page holds [`RECENT_MESSAGES`] messages at most.
const NEAR_PAGES: usize = 64;
/// A reader starts a room's idle expiry anew once per this fraction of the idle time.
const TOUCH_EVERY: u32 = 8;

const PRELUDE: &str = r"
local M, Z, H = KEYS[1], KEYS[2], KEYS[3]
local function keep(idle)
  redis.call('PEXPIRE', M, idle)
  redis.call('PEXPIRE', Z, idle)
  redis.call('PEXPIRE', H, idle)
end
local function unload()
  redis.call('DEL', Z, H)
  redis.call('HSET', M, 'loaded', 0, 'complete', 0, 'n', 0)
end
";

fn script(body: &str) -> Script {
    Script::from_lua(format!("{PRELUDE}{body}"))
}

/// `{1, has_more, version, json...}` for a hit, `{2, has_more}` for a hit at the version the
/// caller holds (`ARGV[4]`, empty for none), `{0, version}` for a miss (admitting the room).
/// The idle expiry starts anew only when `ARGV[5]` is `1`: a reader asks for that now and then
/// ([`TOUCH_EVERY`] of the idle time), not on every read of a busy room.
static LATEST: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local limit, fresh, idle = tonumber(ARGV[1]), ARGV[2], ARGV[3]
-- Part of the room was evicted under memory pressure: storage answers. The new version goes
-- back as Redis holds it, since Lua's tostring rounds numbers past 10^14.
local function evicted()
  unload()
  redis.call('HINCRBY', M, 'v', 1)
  return {0, redis.call('HGET', M, 'v')}
end
local room = redis.call('HMGET', M, 'v', 'loaded', 'n', 'complete')
local v = room[1]
if not v then
  redis.call('DEL', Z, H)
  redis.call('HSET', M, 'v', fresh, 'last', 0, 'loaded', 0, 'complete', 0, 'n', 0)
  redis.call('PEXPIRE', M, idle)
  return {0, fresh}
end
if ARGV[5] == '1' then keep(idle) end
if room[2] ~= '1' then return {0, v} end
local n = redis.call('ZCARD', Z)
if n ~= tonumber(room[3]) then return evicted() end
local complete = room[4] == '1'
if n < limit and not complete then return {0, v} end
local more = 0
if n > limit or not complete then more = 1 end
if ARGV[4] == v then return {2, more} end
local out = {1, more, v}
if limit > 0 and n > 0 then
  local ids = redis.call('ZRANGE', Z, -limit, -1)
  local fields = {}
  for i = 1, #ids do fields[i] = 'j:' .. ids[i] end
  local values = redis.call('HMGET', H, unpack(fields))
  for i = 1, #ids do
    if not values[i] then return evicted() end
    out[#out + 1] = values[i]
  end
end
return out
",
    )
});

/// Loads `id, seq, edited, json` quadruples if the version is still the ticket, and uses the
/// ticket up: readers that missed together hold the same ticket, and a page one of them read
/// before a send committed must not replace the page of one that read after it (the room's
/// `last` would still count the send, so its report would be dropped as already known).
static FILL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local v = redis.call('HGET', M, 'v')
if not v or v ~= ARGV[1] then return 0 end
redis.call('HINCRBY', M, 'v', 1)
redis.call('DEL', Z, H)
local n, last = 0, tonumber(redis.call('HGET', M, 'last'))
for i = 4, #ARGV, 4 do
  local id, seq = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('ZADD', Z, seq, id)
  redis.call('HSET', H, 'j:' .. id, ARGV[i + 3], 'e:' .. id, ARGV[i + 2])
  n = n + 1
  if seq > last then last = seq end
end
redis.call('HSET', M, 'loaded', 1, 'complete', ARGV[2], 'n', n, 'last', last)
keep(ARGV[3])
return 1
",
    )
});

/// Reports stored messages of the room, ascending by seq: `seq, id, edited, json` quadruples
/// after the idle time and the number of messages held at most.
static STORED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', M) == 0 then return 0 end
redis.call('HINCRBY', M, 'v', 1)
local idle, recent = ARGV[1], tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', M, 'last'))
local loaded = redis.call('HGET', M, 'loaded') == '1'
for i = 3, #ARGV, 4 do
  local seq, id = tonumber(ARGV[i]), ARGV[i + 1]
  if seq > last then
    if loaded then
      if seq == last + 1 then
        redis.call('ZADD', Z, seq, id)
        redis.call('HSET', H, 'j:' .. id, ARGV[i + 3], 'e:' .. id, ARGV[i + 2])
        local n = redis.call('HINCRBY', M, 'n', 1)
        if n > recent then
          local popped = redis.call('ZPOPMIN', Z, n - recent)
          for j = 1, #popped, 2 do redis.call('HDEL', H, 'j:' .. popped[j], 'e:' .. popped[j]) end
          redis.call('HSET', M, 'complete', 0, 'n', recent)
        end
      else
        unload()
        loaded = false
      end
    end
    last = seq
  end
end
redis.call('HSET', M, 'last', last)
keep(idle)
return 1
",
    )
});

static EDITED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', M) == 0 then return 0 end
redis.call('HINCRBY', M, 'v', 1)
local seq, id, edited, idle = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[5]
keep(idle)
if redis.call('HGET', M, 'loaded') ~= '1' then return 0 end
if seq > tonumber(redis.call('HGET', M, 'last')) then
  unload()
  return 0
end
local score = redis.call('ZSCORE', Z, id)
if score and tonumber(score) == seq then
  local held = tonumber(redis.call('HGET', H, 'e:' .. id) or '-1')
  if held <= edited then redis.call('HSET', H, 'j:' .. id, ARGV[4], 'e:' .. id, ARGV[3]) end
end
return 1
",
    )
});

static DELETED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', M) == 0 then return 0 end
redis.call('HINCRBY', M, 'v', 1)
local id = ARGV[1]
keep(ARGV[2])
if redis.call('HGET', M, 'loaded') ~= '1' then return 0 end
if redis.call('ZSCORE', Z, id) then
  redis.call('ZREM', Z, id)
  redis.call('HDEL', H, 'j:' .. id, 'e:' .. id)
  redis.call('HINCRBY', M, 'n', -1)
else
  unload()
end
return 1
",
    )
});

/// Forgets the room's messages and moves its version, so no earlier ticket can fill it.
static INVALIDATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', M) == 0 then return 0 end
redis.call('HINCRBY', M, 'v', 1)
unload()
return 1
",
    )
});

/// [`MessageCache`] on Redis, shared by every instance.
#[derive(Debug)]
pub struct RedisMessageCache {
    shared: Arc<Shared>,
    repair: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    redis: RedisConnection,
    idle: String,
    /// How long a reader goes without starting a room's idle expiry anew.
    touch_every: Duration,
    /// Rooms whose write report failed and that are not invalidated in Redis yet.
    dirty: Mutex<HashSet<RoomId>>,
    /// The pages served last, by room and limit, with the room's version when they were read.
    near: Mutex<HashMap<(RoomId, u32), NearPage>>,
    /// The script calls for each page being read, so that concurrent reads share them.
    flights: Mutex<HashMap<(RoomId, u32), Arc<Flight>>>,
}

/// The script calls for one page: how many have started, and the answer of the last one (with
/// its number; `None` if it failed), which reads that arrived before it started may take.
#[derive(Debug, Default)]
struct Flight {
    started: AtomicU64,
    last: tokio::sync::Mutex<Option<(u64, Option<CachedPage>)>>,
}

impl Flight {
    /// The answer of a call that started after this read arrived, or of `call`, made now.
    async fn share<F: Future<Output = DomainResult<CachedPage>>>(
        &self,
        call: impl FnOnce() -> F,
    ) -> DomainResult<CachedPage> {
        let arrived = self.started.load(Ordering::Acquire);
        let mut last = self.last.lock().await;
        if let Some((number, answer)) = &*last
            && *number > arrived
        {
            // A failure is shared too: a Redis that answers slowly must not be waited for once
            // per queued read.
            return answer.clone().ok_or_else(|| DomainError::unavailable(WHAT, "the cache read failed"));
        }
        let number = self.started.fetch_add(1, Ordering::AcqRel) + 1;
        let answer = call().await;
        *last = Some((number, answer.as_ref().ok().cloned()));
        answer
    }
}

/// A copy of a page served, with the room's version when it was read and when this instance
/// last started the room's idle expiry anew.
#[derive(Debug, Clone)]
struct NearPage {
    version: String,
    page: Arc<HistoryPage>,
    touched: Instant,
}

impl RedisMessageCache {
    /// Needs a tokio runtime: it spawns the task that repairs rooms whose reports failed.
    pub fn new(redis: RedisConnection) -> Self {
        let idle = redis.settings().cache_idle.max(Duration::from_secs(1));
        let shared = Arc::new(Shared {
            redis,
            idle: millis(idle).to_string(),
            touch_every: idle / TOUCH_EVERY,
            dirty: Mutex::new(HashSet::new()),
            near: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        });
        let repair = tokio::spawn(repair(Arc::downgrade(&shared)));
        Self { shared, repair }
    }

    /// Rooms this instance still has to invalidate in Redis.
    pub fn dirty_rooms(&self) -> usize {
        self.shared.dirty().len()
    }
}

impl Drop for RedisMessageCache {
    fn drop(&mut self) {
        self.repair.abort();
    }
}

impl Shared {
    fn dirty(&self) -> std::sync::MutexGuard<'_, HashSet<RoomId>> {
        lock(&self.dirty)
    }

    fn is_dirty(&self, room: RoomId) -> bool {
        self.dirty().contains(&room)
    }

    /// The calls for the page of `limit` messages of `room`. Past [`NEAR_PAGES`] pages, those
    /// nobody is reading are forgotten.
    fn flight(&self, room: RoomId, limit: u32) -> Arc<Flight> {
        let mut flights = lock(&self.flights);
        if flights.len() >= NEAR_PAGES && !flights.contains_key(&(room, limit)) {
            flights.retain(|_, flight| Arc::strong_count(flight) > 1);
        }
        Arc::clone(flights.entry((room, limit)).or_default())
    }

    /// Notes that the room's idle expiry was started anew at `now`, by a read at `version`.
    fn touched(&self, room: RoomId, limit: u32, version: &str, now: Instant) {
        if let Some(near) = lock(&self.near).get_mut(&(room, limit))
            && near.version == version
        {
            near.touched = now;
        }
    }

    /// Keeps a copy of a page read at `version`, in place of any older one; when
    /// [`NEAR_PAGES`] are held, one of the others makes way. `touched` is when this instance
    /// last started the room's idle expiry anew.
    fn keep_near(
        &self,
        room: RoomId,
        limit: u32,
        version: String,
        page: &Arc<HistoryPage>,
        touched: Instant,
    ) {
        let mut near = lock(&self.near);
        if near.len() >= NEAR_PAGES
            && !near.contains_key(&(room, limit))
            && let Some(other) = near.keys().next().copied()
        {
            near.remove(&other);
        }
        near.insert((room, limit), NearPage { version, page: Arc::clone(page), touched });
    }

    async fn call(&self, script: &Script, room: RoomId, args: Vec<String>) -> DomainResult<Value> {
        self.redis.script(WHAT, script, self.redis.keys().cache(room).to_vec(), args).await
    }

    /// A write report: on failure the room is marked dirty before the error is returned.
    async fn write(&self, script: &Script, room: RoomId, args: Vec<String>) -> DomainResult<()> {
        match self.call(script, room, args).await {
            Ok(_) => Ok(()),
            Err(error) => {
                let mut dirty = self.dirty();
                if dirty.len() < MAX_DIRTY {
                    dirty.insert(room);
                } else {
                    tracing::error!(%room, "too many rooms to repair in the message cache; one may serve stale messages until it idles out");
                }
                Err(error)
            }
        }
    }
}

/// Invalidates dirty rooms in Redis, as soon as it answers again.
async fn repair(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(REPAIR_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let rooms: Vec<RoomId> = shared.dirty().iter().copied().collect();
        for room in rooms {
            match shared.call(&INVALIDATE, room, Vec::new()).await {
                Ok(_) => {
                    shared.dirty().remove(&room);
                }
                Err(_) => break, // still unreachable: try again on the next tick
            }
        }
    }
}

/// An edit time as microseconds, `-1` for never edited (older than any edit).
fn edited_micros(message: &Message) -> String {
    message.edited_at.map_or(-1, |at| at.timestamp_micros()).to_string()
}

impl RedisMessageCache {
    /// One LATEST script call for the room's page of `limit` messages.
    async fn read_latest(&self, room: RoomId, limit: u32) -> DomainResult<CachedPage> {
        if self.shared.is_dirty(room) {
            return Ok(CachedPage::Miss(NO_TICKET));
        }
        let fresh: u64 = rand::rng().random_range(1..(1u64 << 52));
        let near = lock(&self.shared.near).get(&(room, limit)).cloned();
        let held = near.as_ref().map_or_else(String::new, |near| near.version.clone());
        let now = Instant::now();
        let touch =
            near.as_ref().is_none_or(|near| now.duration_since(near.touched) >= self.shared.touch_every);
        // When the idle expiry was last started anew, once this read is done.
        let touched = match &near {
            Some(near) if !touch => near.touched,
            _ => now,
        };
        let args = vec![
            limit.to_string(),
            fresh.to_string(),
            self.shared.idle.clone(),
            held,
            u8::from(touch).to_string(),
        ];
        let answer = self.shared.call(&LATEST, room, args).await?;
        let Value::Array(parts) = answer else { return Err(malformed("cache read")) };
        match parts.first().and_then(int) {
            Some(2) => {
                let NearPage { version, page, .. } = near.ok_or_else(|| malformed("cache read"))?;
                let has_more = parts.get(1).and_then(int) == Some(1);
                if page.has_more == has_more {
                    if touch {
                        self.shared.touched(room, limit, &version, now);
                    }
                    return Ok(CachedPage::Hit(page));
                }
                // Older messages came or went beyond the page: the same messages, told anew.
                let page = Arc::new(HistoryPage::new(page.messages.clone(), has_more));
                self.shared.keep_near(room, limit, version, &page, touched);
                Ok(CachedPage::Hit(page))
            }
            Some(1) => {
                let has_more = parts.get(1).and_then(int) == Some(1);
                let version =
                    parts.get(2).and_then(Value::as_string).ok_or_else(|| malformed("cache version"))?;
                let messages = parts[3..]
                    .iter()
                    .map(|part| part.as_string().ok_or_else(|| malformed("cached message")))
                    .map(|json| json.and_then(|json| decode_message(&json)))
                    .collect::<DomainResult<Vec<Message>>>()?;
                let page = Arc::new(HistoryPage::new(messages, has_more));
                self.shared.keep_near(room, limit, version, &page, touched);
                Ok(CachedPage::Hit(page))
            }
            Some(0) => {
                let version = parts
                    .get(1)
                    .and_then(Value::as_string)
                    .and_then(|raw| raw.parse::<u64>().ok())
                    .ok_or_else(|| malformed("cache version"))?;
                Ok(CachedPage::Miss(FillTicket(version)))
            }
            _ => Err(malformed("cache read")),
        }
    }
}

#[async_trait]
impl MessageCache for RedisMessageCache {
    /// Concurrent reads of one page share script calls: a read takes the answer of a call that
    /// started after it arrived (so it reflects every write acknowledged before the read began),
    /// or makes the call itself; one call per page is in flight at a time, and each answers
    /// every read that queued while the one before it ran.
    async fn latest(&self, room: RoomId, limit: u32) -> DomainResult<CachedPage> {
        let limit = limit.min(RECENT_MESSAGES);
        self.shared.flight(room, limit).share(|| self.read_latest(room, limit)).await
    }

    async fn fill(&self, room: RoomId, page: &HistoryPage, ticket: FillTicket) -> DomainResult<()> {
        if ticket == NO_TICKET {
            return Ok(());
        }
        let recent = RECENT_MESSAGES as usize;
        let skip = page.messages.len().saturating_sub(recent);
        let complete = !page.has_more && skip == 0;
        let mut args = vec![ticket.0.to_string(), u8::from(complete).to_string(), self.shared.idle.clone()];
        for message in &page.messages[skip..] {
            args.push(message.id.to_string());
            args.push(message.seq.to_string());
            args.push(edited_micros(message));
            args.push(encode_message(message));
        }
        self.shared.call(&FILL, room, args).await.map(drop)
    }

    async fn messages_stored(&self, room: RoomId, messages: &[Message]) -> DomainResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(2 + 4 * messages.len());
        args.push(self.shared.idle.clone());
        args.push(RECENT_MESSAGES.to_string());
        for message in messages {
            args.push(message.seq.to_string());
            args.push(message.id.to_string());
            args.push(edited_micros(message));
            args.push(encode_message(message));
        }
        self.shared.write(&STORED, room, args).await
    }

    async fn message_edited(&self, message: &Message) -> DomainResult<()> {
        let args = vec![
            message.seq.to_string(),
            message.id.to_string(),
            edited_micros(message),
            encode_message(message),
            self.shared.idle.clone(),
        ];
        self.shared.write(&EDITED, message.room_id, args).await
    }

    async fn message_deleted(&self, room: RoomId, id: MessageId) -> DomainResult<()> {
        self.shared.write(&DELETED, room, vec![id.to_string(), self.shared.idle.clone()]).await
    }
}

#[cfg(test)]
mod tests {
    use fred::prelude::{HashesInterface, KeysInterface, SortedSetsInterface};

    use super::*;
    use crate::testing::TestRedis;

    #[tokio::test]
    async fn a_room_evicted_in_part_misses_with_a_ticket_that_fills() {
        let Some(redis) = TestRedis::connect().await else { return };
        let cache = RedisMessageCache::new(redis.connection.clone());
        let room = RoomId::generate();
        let page = HistoryPage::new(convo_contract::fixture::messages(room, 1, 5), false);
        let CachedPage::Miss(ticket) = cache.latest(room, 10).await.expect("latest") else {
            panic!("expected a miss");
        };
        cache.fill(room, &page, ticket).await.expect("fill");

        // A version past 10^14, as most rooms' are, and one held message lost to eviction.
        let [meta, seqs, _] = redis.connection.keys().cache(room);
        let client = redis.connection.client(WHAT).expect("connected");
        client.hset::<(), _, _>(&meta, ("v", "4000000000000000")).await.expect("hset");
        client.zrem::<(), _, _>(&seqs, page.messages[0].id.to_string()).await.expect("zrem");

        let CachedPage::Miss(ticket) = cache.latest(room, 10).await.expect("a miss, not an error") else {
            panic!("expected a miss");
        };
        assert_eq!(ticket, FillTicket(4_000_000_000_000_001));
        cache.fill(room, &page, ticket).await.expect("fill");
        assert_eq!(cache.latest(room, 10).await.expect("latest"), CachedPage::Hit(Arc::new(page)));
    }

    /// Reads of one page that arrive while a call for it runs share the next call, and each
    /// sees what was written before it began.
    #[tokio::test]
    async fn concurrent_reads_of_a_page_share_script_calls() {
        let Some(redis) = TestRedis::connect().await else { return };
        let cache = RedisMessageCache::new(redis.connection.clone());
        let room = RoomId::generate();
        let mut all = convo_contract::fixture::messages(room, 1, 3);
        let CachedPage::Miss(ticket) = cache.latest(room, 10).await.expect("latest") else {
            panic!("expected a miss");
        };
        cache.fill(room, &HistoryPage::new(all.clone(), false), ticket).await.expect("fill");
        let calls = || cache.shared.flight(room, 10).started.load(Ordering::Acquire);

        for round in 0..3 {
            let next = convo_contract::fixture::message(room, 4 + round);
            cache.messages_stored(room, std::slice::from_ref(&next)).await.expect("stored");
            all.push(next);
            let before = calls();
            let reads = futures_util::future::join_all((0..50).map(|_| cache.latest(room, 10))).await;
            for read in reads {
                let CachedPage::Hit(page) = read.expect("latest") else { panic!("expected a hit") };
                assert_eq!(page.messages, all, "every read sees the message stored before it");
            }
            // The first read's call, then one more for all who queued behind it.
            assert!(calls() - before <= 2, "50 reads made {} calls", calls() - before);
        }
    }

    /// Reads that queued behind a call that failed slowly share its failure rather than each
    /// waiting for a slow call of its own.
    #[tokio::test(start_paused = true)]
    async fn reads_queued_behind_a_failed_call_share_its_failure() {
        let flight = Flight::default();
        let calls = AtomicU64::new(0);
        let slow_failure = || async {
            calls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            Err(DomainError::unavailable(WHAT, "timed out"))
        };
        let started = tokio::time::Instant::now();
        let reads = futures_util::future::join_all((0..20).map(|_| flight.share(slow_failure))).await;
        assert!(reads.iter().all(Result::is_err));
        assert!(calls.load(Ordering::Relaxed) <= 2, "{} calls", calls.load(Ordering::Relaxed));
        assert!(started.elapsed() <= Duration::from_secs(2), "waited {:?}", started.elapsed());
    }

    /// Reads keep a room from expiring, without each one starting its idle time anew.
    #[tokio::test]
    async fn reads_start_the_idle_time_anew_now_and_then() {
        let Some(redis) = TestRedis::connect().await else { return };
        let mut settings = crate::testing::settings(&redis.url, &redis.prefix);
        settings.cache_idle = Duration::from_secs(1); // started anew at most every 125 ms
        let cache = RedisMessageCache::new(RedisConnection::connect(settings).await.expect("connects"));
        let room = RoomId::generate();
        let page = HistoryPage::new(convo_contract::fixture::messages(room, 1, 3), false);
        let CachedPage::Miss(ticket) = cache.latest(room, 10).await.expect("latest") else {
            panic!("expected a miss");
        };
        cache.fill(room, &page, ticket).await.expect("fill");
        let [meta, ..] = redis.connection.keys().cache(room);
        let client = redis.connection.client(WHAT).expect("connected");
        let ttl = || async { client.pttl::<i64, _>(&meta).await.expect("pttl") };
        let hit = || async {
            assert!(matches!(cache.latest(room, 10).await.expect("latest"), CachedPage::Hit(_)));
        };

        hit().await;
        assert!(ttl().await > 900, "the first read starts it anew");
        client.pexpire::<(), _>(&meta, 500, None).await.expect("pexpire");
        hit().await;
        assert!(ttl().await <= 500, "a read right after leaves it");
        tokio::time::sleep(Duration::from_millis(200)).await;
        hit().await;
        assert!(ttl().await > 700, "a read an eighth of the idle time later starts it anew");
    }
}
