//! Password hashing with argon2id, on a bounded pool.
//!
//! Each hash or check takes about 25 ms of CPU and 19 MiB of memory. Run without a bound, a
//! storm of logins or registrations starts as many at once as requests arrive, and memory grows
//! by 19 MiB per request in flight. So every hash and check waits for one of a fixed number of
//! permits (by default the number of cores, the most that can usefully compute at once) and
//! holds it until its work on the blocking pool has ended, even if the request that asked for it
//! is gone. At most `permits × 19 MiB` of hashing memory is then in use at any time. A request
//! that waits longer than the queue allowance is refused with [`DomainError::Overloaded`].

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::Error as HashError;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use async_trait::async_trait;
use convo_domain::{DomainError, DomainResult, Password, PasswordHash, PasswordHasher};
use tokio::sync::Semaphore;
use tokio::task::spawn_blocking;

/// The OWASP minimum for argon2id: 19 MiB of memory, 2 passes, 1 lane. Written out rather than
/// taken from the crate's defaults, so an upgrade of the crate cannot silently change the cost.
const PARAMS: Params = match Params::new(19_456, 2, 1, None) {
    Ok(params) => params,
    Err(_) => panic!("argon2 parameters out of range"),
};

/// How long a hash or check may wait for a permit before the request is refused.
pub const QUEUE_ALLOWANCE: Duration = Duration::from_secs(5);

/// What a refused request is told to wait: by then the queue ahead of it has moved on.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A fixed number of permits for CPU- and memory-heavy jobs run on the blocking pool.
#[derive(Debug, Clone)]
pub struct HashingPool {
    permits: Arc<Semaphore>,
    queue_allowance: Duration,
}

impl HashingPool {
    /// At most `permits` jobs at once (at least one); a job waits at most `queue_allowance` for
    /// its turn.
    pub fn new(permits: usize, queue_allowance: Duration) -> Self {
        Self { permits: Arc::new(Semaphore::new(permits.max(1))), queue_allowance }
    }

    /// One permit per core, waiting at most [`QUEUE_ALLOWANCE`].
    pub fn per_core() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(cores, QUEUE_ALLOWANCE)
    }

    /// Runs `job` on the blocking pool once a permit is free. The permit moves into the job, so
    /// it is held until the job ends even if the caller stops waiting for it.
    async fn run<T, F>(&self, job: F) -> DomainResult<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit =
            match tokio::time::timeout(self.queue_allowance, Arc::clone(&self.permits).acquire_owned()).await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(closed)) => return Err(DomainError::internal(closed)),
                Err(_) => {
                    return Err(DomainError::Overloaded {
                        what: "password hashing",
                        retry_after: RETRY_AFTER,
                    });
                }
            };
        spawn_blocking(move || {
            let _held = permit;
            job()
        })
        .await
        .map_err(DomainError::internal)
    }
}

impl Default for HashingPool {
    fn default() -> Self {
        Self::per_core()
    }
}

/// [`PasswordHasher`] with argon2id (v19, m=19456 KiB, t=2, p=1), producing PHC strings.
/// Verification reads the parameters from the stored hash, so hashes made with other
/// parameters keep working. Hashes and checks run on a [`HashingPool`].
#[derive(Debug, Clone, Default)]
pub struct Argon2PasswordHasher {
    pool: HashingPool,
}

impl Argon2PasswordHasher {
    /// On a pool of one permit per core.
    pub fn new() -> Self {
        Self::default()
    }

    /// On this pool.
    pub fn with_pool(pool: HashingPool) -> Self {
        Self { pool }
    }
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, PARAMS)
}

#[async_trait]
impl PasswordHasher for Argon2PasswordHasher {
    async fn hash(&self, password: &Password) -> DomainResult<PasswordHash> {
        let password = password.expose().to_owned();
        let phc = self
            .pool
            .run(move || argon2().hash_password(password.as_bytes()).map(|hash| hash.to_string()))
            .await?
            .map_err(DomainError::internal)?;
        Ok(PasswordHash::new(phc))
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> DomainResult<bool> {
        let password = password.expose().to_owned();
        let phc = hash.as_str().to_owned();
        self.pool
            .run(move || {
                // A stored hash that does not parse is corrupt data, not a wrong password.
                let parsed = argon2::PasswordHash::new(&phc).map_err(DomainError::internal)?;
                match argon2().verify_password(password.as_bytes(), &parsed) {
                    Ok(()) => Ok(true),
                    Err(HashError::PasswordInvalid) => Ok(false),
                    Err(error) => Err(DomainError::internal(error)),
                }
            })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(raw: &str) -> Password {
        Password::parse(raw).expect("a valid password")
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = Argon2PasswordHasher::new();
        let hash = hasher.hash(&password("Corr3ct-horse")).await.expect("hash");
        assert!(hasher.verify(&password("Corr3ct-horse"), &hash).await.expect("verify"));
        assert!(!hasher.verify(&password("Corr3ct-horsE"), &hash).await.expect("verify"));
        assert!(!hasher.verify(&Password::attempt("x").expect("attempt"), &hash).await.expect("verify"));
    }

    #[tokio::test]
    async fn the_phc_string_names_argon2id_and_its_cost() {
        let hash = Argon2PasswordHasher::new().hash(&password("Corr3ct-horse")).await.expect("hash");
        assert!(
            hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "unexpected PHC string {}",
            hash.as_str()
        );
    }

    #[tokio::test]
    async fn each_hash_has_its_own_salt() {
        let hasher = Argon2PasswordHasher::new();
        let first = hasher.hash(&password("Corr3ct-horse")).await.expect("hash");
        let second = hasher.hash(&password("Corr3ct-horse")).await.expect("hash");
        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn hashes_with_other_parameters_still_verify() {
        let cheap = Params::new(8, 1, 1, None).expect("params");
        let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, cheap)
            .hash_password(b"Corr3ct-horse")
            .expect("hash")
            .to_string();
        let hasher = Argon2PasswordHasher::new();
        assert!(hasher.verify(&password("Corr3ct-horse"), &PasswordHash::new(phc)).await.expect("verify"));
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_is_an_internal_error() {
        let hasher = Argon2PasswordHasher::new();
        for corrupt in ["", "not a hash", "$argon2id$v=19$m=19456,t=2,p=1$", "$bcrypt$v=1$abc$def"] {
            let result =
                hasher.verify(&password("Corr3ct-horse"), &PasswordHash::new(corrupt.to_owned())).await;
            assert!(matches!(result, Err(DomainError::Internal(_))), "{corrupt:?} gave {result:?}");
        }
    }

    /// A job that holds its permit until `release` is sent (or dropped).
    fn held_job() -> (std::sync::mpsc::Sender<()>, impl FnOnce() + Send + 'static) {
        let (release, released) = std::sync::mpsc::channel::<()>();
        (release, move || {
            let _ = released.recv();
        })
    }

    #[tokio::test]
    async fn no_more_jobs_run_at_once_than_the_pool_has_permits() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = HashingPool::new(2, Duration::from_secs(60));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..12)
            .map(|_| {
                let (pool, running, most) = (pool.clone(), Arc::clone(&running), Arc::clone(&most));
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(10));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for job in jobs {
            job.await.expect("task").expect("every job gets its turn");
        }
        let most = most.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} jobs ran at once on a pool of 2");
    }

    #[tokio::test]
    async fn a_job_that_waits_past_the_allowance_is_refused_as_overloaded() {
        let pool = HashingPool::new(1, Duration::from_millis(50));
        let (release, job) = held_job();
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(job).await }
        });
        // Wait until the first job holds the only permit.
        while pool.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|| ()).await.unwrap_err();
        assert!(
            matches!(refused, DomainError::Overloaded { retry_after, .. } if retry_after > Duration::ZERO),
            "{refused:?}"
        );
        release.send(()).expect("release");
        busy.await.expect("task").expect("the first job ran");
        pool.run(|| ()).await.expect("the permit is back");
    }

    #[tokio::test]
    async fn a_job_keeps_its_permit_after_its_caller_gives_up() {
        let pool = HashingPool::new(1, Duration::from_millis(50));
        let (release, job) = held_job();
        let caller = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(job).await }
        });
        while pool.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        caller.abort();
        assert!(caller.await.expect_err("aborted").is_cancelled());
        assert!(
            matches!(pool.run(|| ()).await, Err(DomainError::Overloaded { .. })),
            "the abandoned job still runs and still holds the permit"
        );
        release.send(()).expect("release");
        while pool.permits.available_permits() == 0 {
            tokio::task::yield_now().await;
        }
        pool.run(|| ()).await.expect("the permit is back once the job ended");
    }

    #[tokio::test]
    async fn the_hasher_refuses_when_its_pool_is_saturated() {
        let pool = HashingPool::new(1, Duration::from_millis(50));
        let hasher = Argon2PasswordHasher::with_pool(pool.clone());
        let (release, job) = held_job();
        let busy = tokio::spawn(async move { pool.run(job).await });
        while hasher.pool.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = hasher.hash(&password("Corr3ct-horse")).await.unwrap_err();
        assert!(matches!(refused, DomainError::Overloaded { .. }), "{refused:?}");
        release.send(()).expect("release");
        busy.await.expect("task").expect("ran");
        let hash = hasher.hash(&password("Corr3ct-horse")).await.expect("hash once the pool is free");
        assert!(hasher.verify(&password("Corr3ct-horse"), &hash).await.expect("verify"));
    }
}
