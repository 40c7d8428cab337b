//! Users: the values a registration is made of, the user itself and the port that stores them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{DomainResult, Field, ValidationError};
use crate::id::UserId;
use crate::value::text_value;

text_value!(
    /// An email address: at most 254 chars, stored and compared in lower case.
    Email
);

impl Email {
    /// The longest value allowed, in characters.
    pub const MAX_LEN: usize = 254;

    /// The value, if `raw` keeps the rules above; otherwise which rule it breaks.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let invalid = |why: &str| ValidationError::new(Field::Email, why);
        let value = raw.trim();
        if value.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if value.chars().count() > Self::MAX_LEN {
            return Err(invalid("must be at most 254 characters"));
        }
        let Some((local, domain)) = value.rsplit_once('@') else {
            return Err(invalid("must be an address like name@example.com"));
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
            && labels
                .last()
                .is_some_and(|tld| tld.chars().all(char::is_alphabetic) && tld.chars().count() >= 2);
        if !local_ok || !domain_ok {
            return Err(invalid("must be an address like name@example.com"));
        }
        Ok(Self(value.to_lowercase()))
    }
}

text_value!(
    /// 3-20 chars of `[A-Za-z0-9_]`; the case is kept, uniqueness ignores it.
    Username
);

impl Username {
    /// The value, if `raw` keeps the rules above; otherwise which rule it breaks.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let len = raw.chars().count();
        if !(3..=20).contains(&len) {
            return Err(ValidationError::new(Field::Username, "must be 3-20 characters"));
        }
        if !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ValidationError::new(
                Field::Username,
                "may contain only letters A-Z, digits and underscores",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The form uniqueness is checked on.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

text_value!(secret
    /// A plain-text password that passed the strength rules. Never printed.
    Password
);

impl Password {
    /// The value, if `raw` keeps the rules above; otherwise which rule it breaks.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let len = raw.chars().count();
        if !(8..=128).contains(&len) {
            return Err(ValidationError::new(Field::Password, "must be 8-128 characters"));
        }
        if !raw.chars().any(char::is_lowercase) {
            return Err(ValidationError::new(Field::Password, "must contain a lower-case letter"));
        }
        if !raw.chars().any(char::is_uppercase) {
            return Err(ValidationError::new(Field::Password, "must contain an upper-case letter"));
        }
        if !raw.chars().any(|c| c.is_ascii_digit()) {
            return Err(ValidationError::new(Field::Password, "must contain a digit"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A login attempt is checked against the stored hash as typed, without the strength rules:
    /// they may have changed since the user registered.
    pub fn attempt(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() || raw.chars().count() > 128 {
            return Err(ValidationError::new(Field::Password, "must be 1-128 characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The password as typed, for the hasher alone.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

text_value!(secret
    /// A password hash in PHC string format. Not printed either.
    PasswordHash
);

impl PasswordHash {
    /// Wraps a PHC string from the hasher or from storage.
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string, for storage and for checking a password against it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A registered user, as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// Their email, lower-cased; unique.
    pub email: Email,
    /// Their name, shown to others; unique ignoring case.
    pub username: Username,
    /// When they registered.
    pub created_at: DateTime<Utc>,
}

/// A user as shown beside their messages and in room events: `{id, username}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    /// The user's id.
    pub id: UserId,
    /// Their name.
    pub username: Username,
}

impl From<&User> for UserRef {
    fn from(user: &User) -> Self {
        Self { id: user.id, username: user.username.clone() }
    }
}

/// A user together with the hash their password is checked against.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The user.
    pub user: User,
    /// The hash of their password.
    pub password_hash: PasswordHash,
}

/// Stores users. Adapters turn unique-constraint violations into `EmailTaken`/`UsernameTaken`.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Stores a new user with their password's hash; `EmailTaken` or `UsernameTaken` on a clash.
    async fn create(&self, user: &User, password_hash: &PasswordHash) -> DomainResult<()>;
    /// The user with this id, if any.
    async fn find_by_id(&self, id: UserId) -> DomainResult<Option<User>>;
    /// The user registered with this email and their password's hash, for a login.
    async fn find_credentials(&self, email: &Email) -> DomainResult<Option<Credentials>>;
}

/// Turns passwords into hashes and checks them; slow on purpose, so adapters run it off the
/// async threads.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// A fresh salted hash of the password, as a PHC string.
    async fn hash(&self, password: &Password) -> DomainResult<PasswordHash>;
    /// Whether the password is the one the hash was made from.
    async fn verify(&self, password: &Password, hash: &PasswordHash) -> DomainResult<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_lower_cased_and_trimmed() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "ada.lovelace@example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@-b.com",
            "a..b@c.com",
            "a@b.c",
        ] {
            let err = Email::parse(bad).expect_err(bad);
            assert_eq!(err.field, Field::Email, "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn username_rules() {
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse("abc").is_ok());
        assert!(Username::parse(&"a".repeat(20)).is_ok());
        assert!(Username::parse(&"a".repeat(21)).is_err());
        assert!(Username::parse("with space").is_err());
        assert!(Username::parse("émile").is_err());
        assert_eq!(Username::parse("Ada_99").expect("valid").key(), "ada_99");
    }

    #[test]
    fn password_rules() {
        assert!(Password::parse("Passw0rd").is_ok());
        assert!(Password::parse("Pass0rd").is_err(), "too short");
        assert!(Password::parse("password1").is_err(), "no upper case");
        assert!(Password::parse("PASSWORD1").is_err(), "no lower case");
        assert!(Password::parse("Password").is_err(), "no digit");
        assert!(Password::parse(&format!("Aa1{}", "x".repeat(126))).is_err(), "too long");
        assert_eq!(format!("{:?}", Password::parse("Passw0rd").expect("valid")), "Password(***)");
        assert_eq!(format!("{:?}", PasswordHash::new("$argon2id$secret".into())), "PasswordHash(***)");
    }
}
