//! Password hashing with argon2id.

use argon2::password_hash::Error as HashError;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use async_trait::async_trait;
use convo_domain::{DomainError, DomainResult, Password, PasswordHash, PasswordHasher};
use tokio::task::spawn_blocking;

/// The OWASP minimum for argon2id: 19 MiB of memory, 2 passes, 1 lane. Written out rather than
/// taken from the crate's defaults, so an upgrade of the crate cannot silently change the cost.
const PARAMS: Params = match Params::new(19_456, 2, 1, None) {
    Ok(params) => params,
    Err(_) => panic!("argon2 parameters out of range"),
};

/// [`PasswordHasher`] with argon2id (v19, m=19456 KiB, t=2, p=1), producing PHC strings.
/// Verification reads the parameters from the stored hash, so hashes made with other
/// parameters keep working.
#[derive(Debug, Clone, Copy, Default)]
pub struct Argon2PasswordHasher;

impl Argon2PasswordHasher {
    pub fn new() -> Self {
        Self
    }
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, PARAMS)
}

#[async_trait]
impl PasswordHasher for Argon2PasswordHasher {
    async fn hash(&self, password: &Password) -> DomainResult<PasswordHash> {
        let password = password.expose().to_owned();
        // About 25 ms of CPU and 19 MiB: off the async threads.
        let phc =
            spawn_blocking(move || argon2().hash_password(password.as_bytes()).map(|hash| hash.to_string()))
                .await
                .map_err(DomainError::internal)?
                .map_err(DomainError::internal)?;
        Ok(PasswordHash::new(phc))
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> DomainResult<bool> {
        let password = password.expose().to_owned();
        let phc = hash.as_str().to_owned();
        spawn_blocking(move || {
            // A stored hash that does not parse is corrupt data, not a wrong password.
            let parsed = argon2::PasswordHash::new(&phc).map_err(DomainError::internal)?;
            match argon2().verify_password(password.as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(HashError::PasswordInvalid) => Ok(false),
                Err(error) => Err(DomainError::internal(error)),
            }
        })
        .await
        .map_err(DomainError::internal)?
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
}
