//! Lock striping and housekeeping shared by the adapters: state is split into shards by key,
//! each behind its own std `Mutex` (held only for a few map operations, never across an await),
//! and each shard sweeps out what has expired when its map has grown or time has passed.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use convo_domain::lock;
use tokio::time::Instant;

/// The shard count of adapters whose keys spread evenly (session ids, user ids, topics).
pub(crate) const SHARDS: usize = 16;

/// State split by key into independently locked parts.
#[derive(Debug)]
pub(crate) struct Shards<T> {
    hasher: RandomState,
    shards: Box<[Mutex<T>]>,
}

impl<T> Shards<T> {
    pub(crate) fn new(count: usize, mut init: impl FnMut() -> T) -> Self {
        let shards = (0..count.max(1)).map(|_| Mutex::new(init())).collect();
        Self { hasher: RandomState::new(), shards }
    }

    /// The shard that owns `key`, locked.
    pub(crate) fn of<K: Hash + ?Sized>(&self, key: &K) -> MutexGuard<'_, T> {
        let count = self.shards.len() as u64;
        let index = (self.hasher.hash_one(key) % count) as usize;
        lock(&self.shards[index])
    }

    /// Every shard, each locked in turn (never two at once).
    pub(crate) fn each(&self) -> impl Iterator<Item = MutexGuard<'_, T>> {
        self.shards.iter().map(lock)
    }
}

/// `now + duration`, saturating at a century ahead rather than overflowing.
pub(crate) fn deadline(now: Instant, duration: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(duration.min(CENTURY)).unwrap_or(now)
}

/// When a shard sweeps out expired entries: once it has doubled in size since the last sweep
/// (so a sweep's O(n) is paid for by the n/2 inserts before it, amortised O(1) per operation)
/// or a minute has passed (so a shard that stopped growing does not keep its dead forever).
#[derive(Debug)]
pub(crate) struct Sweep {
    at_len: usize,
    at_time: Instant,
}

impl Sweep {
    /// Shards smaller than this are not worth sweeping by size.
    const MIN_LEN: usize = 64;
    const PERIOD: Duration = Duration::from_secs(60);

    pub(crate) fn new() -> Self {
        Self { at_len: Self::MIN_LEN, at_time: deadline(Instant::now(), Self::PERIOD) }
    }

    pub(crate) fn is_due(&self, len: usize, now: Instant) -> bool {
        len >= self.at_len || now >= self.at_time
    }

    /// Records a sweep that left `len` entries.
    pub(crate) fn done(&mut self, len: usize, now: Instant) {
        self.at_len = len.saturating_mul(2).max(Self::MIN_LEN);
        self.at_time = deadline(now, Self::PERIOD);
    }
}

/// A shard whose entries expire: it is swept on the schedule of its [`Sweep`], the same way in
/// every adapter.
pub(crate) trait Expiring {
    /// Entries held, expired ones included.
    fn held(&self) -> usize;
    /// Drops the entries that are dead at `now`, and gives back spare capacity.
    fn drop_expired(&mut self, now: Instant);
    /// The shard's sweep schedule.
    fn schedule(&mut self) -> &mut Sweep;

    /// Sweeps the shard if it has grown or time has passed since its last sweep.
    fn sweep_if_due(&mut self, now: Instant) {
        let held = self.held();
        if self.schedule().is_due(held, now) {
            self.drop_expired(now);
            let left = self.held();
            self.schedule().done(left, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_in_their_shard() {
        let shards = Shards::new(4, Vec::new);
        shards.of("a").push(1);
        shards.of("a").push(2);
        assert_eq!(*shards.of("a"), vec![1, 2]);
        assert_eq!(shards.each().map(|shard| shard.len()).sum::<usize>(), 2);
    }

    #[test]
    fn a_poisoned_shard_is_recovered() {
        let shards = std::sync::Arc::new(Shards::new(1, || 0));
        let poisoner = std::sync::Arc::clone(&shards);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.of(&());
            panic!("poison the lock");
        })
        .join();
        *shards.of(&()) += 1;
        assert_eq!(*shards.of(&()), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn sweeps_are_due_on_growth_or_after_a_period() {
        let mut sweep = Sweep::new();
        let now = Instant::now();
        assert!(!sweep.is_due(10, now));
        assert!(sweep.is_due(Sweep::MIN_LEN, now));
        sweep.done(100, now);
        assert!(!sweep.is_due(199, now));
        assert!(sweep.is_due(200, now));
        tokio::time::advance(Sweep::PERIOD).await;
        assert!(sweep.is_due(1, Instant::now()));
    }

    /// Entries that die at a given instant.
    struct Deadlines {
        entries: Vec<Instant>,
        sweep: Sweep,
    }

    impl Expiring for Deadlines {
        fn held(&self) -> usize {
            self.entries.len()
        }

        fn drop_expired(&mut self, now: Instant) {
            self.entries.retain(|dies_at| *dies_at > now);
        }

        fn schedule(&mut self) -> &mut Sweep {
            &mut self.sweep
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shard_drops_its_dead_only_when_a_sweep_is_due() {
        let now = Instant::now();
        let mut shard = Deadlines { entries: vec![now; Sweep::MIN_LEN - 1], sweep: Sweep::new() };
        tokio::time::advance(Duration::from_secs(1)).await;
        shard.sweep_if_due(Instant::now());
        assert_eq!(shard.held(), Sweep::MIN_LEN - 1, "not due: too small, too soon");
        shard.entries.push(deadline(Instant::now(), Sweep::PERIOD * 2));
        shard.sweep_if_due(Instant::now());
        assert_eq!(shard.held(), 1, "due by size: only the live entry stays");
        tokio::time::advance(Sweep::PERIOD * 3).await;
        shard.sweep_if_due(Instant::now());
        assert_eq!(shard.held(), 0, "due by time");
    }
}
