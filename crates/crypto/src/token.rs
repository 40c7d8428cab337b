//! Access tokens: JWTs signed with HS256.

use std::fmt;

use chrono::DateTime;
use convo_domain::{AccessGrant, DomainError, DomainResult, Principal, SessionId, TokenCodec, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The claims of an access token, as the JWT carries them: user, session, and issued-at and
/// expiry in Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    sid: Uuid,
    iat: i64,
    exp: i64,
}

impl From<&AccessGrant> for Claims {
    fn from(grant: &AccessGrant) -> Self {
        Self {
            sub: grant.principal.user_id.as_uuid(),
            sid: grant.principal.session_id.as_uuid(),
            iat: grant.issued_at.timestamp(),
            exp: grant.expires_at.timestamp(),
        }
    }
}

impl Claims {
    /// The grant, or `None` for times no token of ours can carry.
    fn into_grant(self) -> Option<AccessGrant> {
        Some(AccessGrant {
            principal: Principal { user_id: UserId::from(self.sub), session_id: SessionId::from(self.sid) },
            issued_at: DateTime::from_timestamp(self.iat, 0)?,
            expires_at: DateTime::from_timestamp(self.exp, 0)?,
        })
    }
}

/// [`TokenCodec`] for HS256 JWTs carrying `sub`, `sid`, `iat` and `exp`. Decoding accepts only
/// HS256 with this secret, a present `sub` and `exp`, and no time past `exp` (no leeway: the
/// server that checks is the one that issued).
pub struct JwtTokenCodec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    header: Header,
    validation: Validation,
}

impl JwtTokenCodec {
    pub fn new(secret: &[u8]) -> Self {
        install_crypto_provider();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        // `sid` and `iat` are required by deserialising into `Claims`.
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            header: Header::new(Algorithm::HS256),
            validation,
        }
    }
}

/// jsonwebtoken picks its crypto backend from crate features; if feature unification ever turns
/// on a second backend it picks none and panics at the first token. Installing ours explicitly
/// prevents that; a second install (another codec, another crate) is refused harmlessly.
fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

impl fmt::Debug for JwtTokenCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtTokenCodec").field("algorithm", &self.header.alg).finish_non_exhaustive()
    }
}

impl TokenCodec for JwtTokenCodec {
    fn encode(&self, grant: &AccessGrant) -> DomainResult<String> {
        encode(&self.header, &Claims::from(grant), &self.encoding).map_err(DomainError::internal)
    }

    fn decode(&self, token: &str) -> DomainResult<AccessGrant> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .and_then(|data| data.claims.into_grant())
            .ok_or(DomainError::Unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::get_current_timestamp;

    use super::*;

    const SECRET: &[u8] = b"a test secret of at least thirty-two bytes";

    fn now() -> i64 {
        i64::try_from(get_current_timestamp()).expect("a timestamp in range")
    }

    fn grant(exp: i64) -> AccessGrant {
        AccessGrant {
            principal: Principal { user_id: UserId::generate(), session_id: SessionId::generate() },
            issued_at: DateTime::from_timestamp(now(), 0).expect("a time in range"),
            expires_at: DateTime::from_timestamp(exp, 0).expect("a time in range"),
        }
    }

    fn assert_refused(codec: &JwtTokenCodec, token: &str) {
        let result = codec.decode(token);
        assert!(matches!(result, Err(DomainError::Unauthenticated)), "{token:?} gave {result:?}");
    }

    #[test]
    fn a_token_round_trips() {
        let codec = JwtTokenCodec::new(SECRET);
        let issued = grant(now() + 3600);
        let token = codec.encode(&issued).expect("encode");
        assert_eq!(codec.decode(&token).expect("decode"), issued);
    }

    #[test]
    fn the_payload_carries_sub_sid_iat_and_exp() {
        let codec = JwtTokenCodec::new(SECRET);
        let issued = grant(now() + 3600);
        let token = codec.encode(&issued).expect("encode");
        let payload =
            decode::<serde_json::Value>(&token, &codec.decoding, &codec.validation).expect("decode").claims;
        assert_eq!(
            payload,
            serde_json::json!({
                "sub": issued.principal.user_id.to_string(),
                "sid": issued.principal.session_id.to_string(),
                "iat": issued.issued_at.timestamp(),
                "exp": issued.expires_at.timestamp(),
            })
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let codec = JwtTokenCodec::new(SECRET);
        assert_refused(&codec, &codec.encode(&grant(now() - 1)).expect("encode"));
        assert_refused(&codec, &codec.encode(&grant(now() - 3600)).expect("encode"));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let forger = JwtTokenCodec::new(b"another secret of at least thirty-two bytes");
        let token = forger.encode(&grant(now() + 3600)).expect("encode");
        assert_refused(&JwtTokenCodec::new(SECRET), &token);
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let codec = JwtTokenCodec::new(SECRET);
        let token = codec.encode(&grant(now() + 3600)).expect("encode");
        let other = codec.encode(&grant(now() + 3600)).expect("encode");
        let [header, _, signature]: [&str; 3] =
            token.split('.').collect::<Vec<_>>().try_into().expect("3 parts");
        let payload = other.split('.').nth(1).expect("a payload");
        assert_refused(&codec, &format!("{header}.{payload}.{signature}"));
    }

    #[test]
    fn garbage_is_refused() {
        let codec = JwtTokenCodec::new(SECRET);
        for garbage in ["", "garbage", "a.b.c", "...", "eyJhbGciOiJIUzI1NiJ9.e30.", "Bearer x"] {
            assert_refused(&codec, garbage);
        }
    }

    #[test]
    fn alg_none_is_refused() {
        let codec = JwtTokenCodec::new(SECRET);
        let token = codec.encode(&grant(now() + 3600)).expect("encode");
        let payload = token.split('.').nth(1).expect("a payload");
        // {"alg":"none","typ":"JWT"}
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        assert_refused(&codec, &format!("{none}.{payload}."));
        assert_refused(&codec, &format!("{none}.{payload}"));
    }

    #[test]
    fn another_algorithm_with_the_same_secret_is_refused() {
        let codec = JwtTokenCodec::new(SECRET);
        let key = EncodingKey::from_secret(SECRET);
        for algorithm in [Algorithm::HS384, Algorithm::HS512] {
            let claims = Claims::from(&grant(now() + 3600));
            let token = encode(&Header::new(algorithm), &claims, &key).expect("encode");
            assert_refused(&codec, &token);
        }
    }

    #[test]
    fn tokens_missing_a_claim_are_refused() {
        #[derive(Serialize)]
        struct Partial {
            #[serde(skip_serializing_if = "Option::is_none")]
            sub: Option<Uuid>,
            #[serde(skip_serializing_if = "Option::is_none")]
            sid: Option<Uuid>,
            #[serde(skip_serializing_if = "Option::is_none")]
            iat: Option<i64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            exp: Option<i64>,
        }
        let codec = JwtTokenCodec::new(SECRET);
        let key = EncodingKey::from_secret(SECRET);
        let full = || Partial {
            sub: Some(Uuid::now_v7()),
            sid: Some(Uuid::now_v7()),
            iat: Some(now()),
            exp: Some(now() + 3600),
        };
        let partials = [
            Partial { sub: None, ..full() },
            Partial { sid: None, ..full() },
            Partial { iat: None, ..full() },
            Partial { exp: None, ..full() },
        ];
        for partial in partials {
            let token = encode(&Header::new(Algorithm::HS256), &partial, &key).expect("encode");
            assert_refused(&codec, &token);
        }
        let token = encode(&Header::new(Algorithm::HS256), &full(), &key).expect("encode");
        assert!(codec.decode(&token).is_ok(), "the complete set of claims is accepted");
    }

    #[test]
    fn the_debug_output_hides_the_secret() {
        let shown = format!("{:?}", JwtTokenCodec::new(SECRET));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
