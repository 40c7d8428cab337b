//! Access tokens: JWTs signed with HS256.

use std::fmt;

use convo_domain::{Claims, DomainError, DomainResult, TokenCodec};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};

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
    fn encode(&self, claims: &Claims) -> DomainResult<String> {
        encode(&self.header, claims, &self.encoding).map_err(DomainError::internal)
    }

    fn decode(&self, token: &str) -> DomainResult<Claims> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| DomainError::Unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use convo_domain::{SessionId, UserId};
    use jsonwebtoken::get_current_timestamp;
    use serde::Serialize;

    use super::*;

    const SECRET: &[u8] = b"a test secret of at least thirty-two bytes";

    fn now() -> i64 {
        i64::try_from(get_current_timestamp()).expect("a timestamp in range")
    }

    fn claims(exp: i64) -> Claims {
        Claims { sub: UserId::generate(), sid: SessionId::generate(), iat: now(), exp }
    }

    fn assert_refused(codec: &JwtTokenCodec, token: &str) {
        let result = codec.decode(token);
        assert!(matches!(result, Err(DomainError::Unauthenticated)), "{token:?} gave {result:?}");
    }

    #[test]
    fn a_token_round_trips() {
        let codec = JwtTokenCodec::new(SECRET);
        let issued = claims(now() + 3600);
        let token = codec.encode(&issued).expect("encode");
        assert_eq!(codec.decode(&token).expect("decode"), issued);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let codec = JwtTokenCodec::new(SECRET);
        assert_refused(&codec, &codec.encode(&claims(now() - 1)).expect("encode"));
        assert_refused(&codec, &codec.encode(&claims(now() - 3600)).expect("encode"));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let forger = JwtTokenCodec::new(b"another secret of at least thirty-two bytes");
        let token = forger.encode(&claims(now() + 3600)).expect("encode");
        assert_refused(&JwtTokenCodec::new(SECRET), &token);
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let codec = JwtTokenCodec::new(SECRET);
        let token = codec.encode(&claims(now() + 3600)).expect("encode");
        let other = codec.encode(&claims(now() + 3600)).expect("encode");
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
        let token = codec.encode(&claims(now() + 3600)).expect("encode");
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
            let token = encode(&Header::new(algorithm), &claims(now() + 3600), &key).expect("encode");
            assert_refused(&codec, &token);
        }
    }

    #[test]
    fn tokens_missing_a_claim_are_refused() {
        #[derive(Serialize)]
        struct Partial {
            #[serde(skip_serializing_if = "Option::is_none")]
            sub: Option<UserId>,
            #[serde(skip_serializing_if = "Option::is_none")]
            sid: Option<SessionId>,
            #[serde(skip_serializing_if = "Option::is_none")]
            iat: Option<i64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            exp: Option<i64>,
        }
        let codec = JwtTokenCodec::new(SECRET);
        let key = EncodingKey::from_secret(SECRET);
        let full = || Partial {
            sub: Some(UserId::generate()),
            sid: Some(SessionId::generate()),
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
