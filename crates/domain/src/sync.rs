//! Locking state shared between threads, where a panic elsewhere must not take the state down
//! with it.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering the state if a thread panicked while holding it (a poisoned lock).
/// Only for state that every critical section leaves consistent between single operations
/// (maps changed one call at a time), so that a panic cannot leave it half-changed.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_poisoned_lock_still_gives_the_state() {
        let shared = Arc::new(Mutex::new(0));
        let poisoner = Arc::clone(&shared);
        let _ = std::thread::spawn(move || {
            let _guard = lock(&poisoner);
            panic!("poison the lock");
        })
        .join();
        assert!(shared.is_poisoned());
        *lock(&shared) += 1;
        assert_eq!(*lock(&shared), 1);
    }
}
