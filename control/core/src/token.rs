//! Access tokens: JWTs (RFC 7519, HS256) carrying user, room, grants and expiry.
//! Owns minting (for `cascade token` and the dev token) and verification, which is
//! pure computation over the configured secrets: no I/O, no clock reads (callers
//! pass the time in), no shared state.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a token allows its bearer to do in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    Publish,
    Subscribe,
}

impl Grant {
    /// Every grant, as named in tokens and on the command line.
    pub const ALL: [Grant; 2] = [Grant::Publish, Grant::Subscribe];

    /// The grant's name in a token's `grants` claim.
    pub fn name(self) -> &'static str {
        match self {
            Grant::Publish => "publish",
            Grant::Subscribe => "subscribe",
        }
    }
}

impl std::str::FromStr for Grant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Grant::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| format!("unknown grant {s:?} (publish, subscribe)"))
    }
}

/// The claims Cascade puts in and reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user the token was issued to.
    pub sub: String,
    /// The one room the token is valid for.
    pub room: String,
    pub grants: Vec<Grant>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch; 0 (or absent) when not stated.
    #[serde(default)]
    pub iat: u64,
}

/// Longest lifetime of an access token the media server accepts by default: a day.
pub const DEFAULT_MAX_LIFETIME: u64 = 24 * 3600;

/// Why a token was refused. The first group maps to 401, the second to 403.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("token key id {0:?} is unknown")]
    UnknownKey(String),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token lifetime of {lifetime} s exceeds the {max} s this server accepts")]
    LifetimeTooLong { lifetime: u64, max: u64 },
    #[error("token is for room {token_room:?}, not {room:?}")]
    WrongRoom { token_room: String, room: String },
    #[error("token does not grant {0:?}")]
    MissingGrant(Grant),
}

impl TokenError {
    /// True for errors that mean "who are you?" (401) rather than "not allowed" (403).
    pub fn is_unauthenticated(&self) -> bool {
        !matches!(
            self,
            TokenError::WrongRoom { .. } | TokenError::MissingGrant(_)
        )
    }

    /// Stable machine-readable code for the HTTP error body.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::UnknownKey(_) => "token_unknown_key",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::LifetimeTooLong { .. } => "token_lifetime_too_long",
            TokenError::WrongRoom { .. } => "token_wrong_room",
            TokenError::MissingGrant(_) => "token_missing_grant",
        }
    }
}

/// A token secret with its key id (the JWT `kid` header).
#[derive(Clone)]
pub struct TokenSecret {
    pub kid: Option<String>,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSecret")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSecret {
    /// Parses `SECRET` or `KID:SECRET` (the form of `--token-secret`).
    pub fn parse(spec: &str) -> Self {
        match spec.split_once(':') {
            Some((kid, secret)) if !kid.is_empty() && !secret.is_empty() => Self {
                kid: Some(kid.to_owned()),
                secret: secret.as_bytes().to_vec(),
            },
            _ => Self {
                kid: None,
                secret: spec.as_bytes().to_vec(),
            },
        }
    }
}

/// Verifies tokens against one or more secrets. The first secret is used for
/// tokens without a `kid`; others are selected by `kid` (key rotation).
#[derive(Clone)]
pub struct TokenVerifier {
    default: DecodingKey,
    by_kid: HashMap<String, DecodingKey>,
    /// Longest accepted lifetime, seconds; `None`: any.
    max_lifetime: Option<u64>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("kids", &self.by_kid.keys().collect::<Vec<_>>())
            .field("max_lifetime", &self.max_lifetime)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// `secrets` must not be empty; the first is the default key.
    pub fn new(secrets: &[TokenSecret]) -> Option<Self> {
        let first = secrets.first()?;
        let by_kid = secrets
            .iter()
            .filter_map(|s| {
                s.kid
                    .clone()
                    .map(|kid| (kid, DecodingKey::from_secret(&s.secret)))
            })
            .collect();
        Some(Self {
            default: DecodingKey::from_secret(&first.secret),
            by_kid,
            max_lifetime: None,
        })
    }

    /// Refuses tokens that live longer than `secs`: `exp - iat`, counted from now
    /// when the token states no issue time or one in the future, so a token cannot
    /// stretch its life by claiming a late `iat`.
    pub fn with_max_lifetime(mut self, secs: u64) -> Self {
        self.max_lifetime = Some(secs);
        self
    }

    /// Verifies signature and expiry at `now_unix` (seconds), then room and grant.
    pub fn verify(
        &self,
        token: &str,
        room: &str,
        grant: Grant,
        now_unix: u64,
    ) -> Result<Claims, TokenError> {
        let claims = self.verify_signature(token, now_unix)?;
        if claims.room != room {
            return Err(TokenError::WrongRoom {
                token_room: claims.room,
                room: room.to_owned(),
            });
        }
        if !claims.grants.contains(&grant) {
            return Err(TokenError::MissingGrant(grant));
        }
        Ok(claims)
    }

    /// Verifies signature and expiry only (for operations on an existing resource,
    /// where the room is checked by the caller).
    pub fn verify_signature(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Malformed(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = match &header.kid {
            Some(kid) => self
                .by_kid
                .get(kid)
                .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?,
            None => &self.default,
        };
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked below against the caller's clock, so verification stays pure.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed(e.to_string()),
            }
        })?;
        if data.claims.exp <= now_unix {
            return Err(TokenError::Expired);
        }
        if let Some(max) = self.max_lifetime {
            let start = match data.claims.iat {
                0 => now_unix,
                iat => iat.min(now_unix),
            };
            let lifetime = data.claims.exp - start;
            if lifetime > max {
                return Err(TokenError::LifetimeTooLong { lifetime, max });
            }
        }
        Ok(data.claims)
    }
}

/// The audience of server-to-server tokens; user tokens never carry it.
pub const CLUSTER_AUDIENCE: &str = "cascade-cluster";

/// Claims of a cluster service token (one media server calling another).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterClaims {
    /// The calling server.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
}

/// Mints a cluster token for server `sub`, valid for `ttl` seconds.
pub fn mint_cluster(
    secret: &TokenSecret,
    sub: &str,
    now_unix: u64,
    ttl: u64,
) -> Result<String, TokenError> {
    let claims = ClusterClaims {
        sub: sub.to_owned(),
        aud: CLUSTER_AUDIENCE.to_owned(),
        exp: now_unix + ttl,
        iat: now_unix,
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = secret.kid.clone();
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret.secret))
        .map_err(|e| TokenError::Malformed(e.to_string()))
}

/// Verifies a cluster token: signature by the cluster key, audience, expiry.
pub fn verify_cluster(
    secret: &TokenSecret,
    token: &str,
    now_unix: u64,
) -> Result<ClusterClaims, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.set_audience(&[CLUSTER_AUDIENCE]);
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<ClusterClaims>(
        token,
        &DecodingKey::from_secret(&secret.secret),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
        _ => TokenError::Malformed(e.to_string()),
    })?;
    if data.claims.exp <= now_unix {
        return Err(TokenError::Expired);
    }
    Ok(data.claims)
}

/// Mints a token. Used by `cascade token`, the dev token and tests.
pub fn mint(secret: &TokenSecret, claims: &Claims) -> Result<String, TokenError> {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = secret.kid.clone();
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&secret.secret))
        .map_err(|e| TokenError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(room: &str, grants: &[Grant], exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            room: room.into(),
            grants: grants.to_vec(),
            exp,
            iat: 1_000,
        }
    }

    #[test]
    fn round_trip_and_grants() {
        let s = TokenSecret::parse("s3cret");
        let v = TokenVerifier::new(std::slice::from_ref(&s)).unwrap();
        let t = mint(&s, &claims("r1", &[Grant::Publish], 2_000)).unwrap();
        assert_eq!(
            v.verify(&t, "r1", Grant::Publish, 1_500).unwrap().sub,
            "alice"
        );
        assert_eq!(
            v.verify(&t, "r1", Grant::Subscribe, 1_500),
            Err(TokenError::MissingGrant(Grant::Subscribe))
        );
        assert!(matches!(
            v.verify(&t, "r2", Grant::Publish, 1_500),
            Err(TokenError::WrongRoom { .. })
        ));
        assert_eq!(
            v.verify(&t, "r1", Grant::Publish, 2_000),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn forged_and_malformed() {
        let good = TokenSecret::parse("good");
        let evil = TokenSecret::parse("evil");
        let v = TokenVerifier::new(std::slice::from_ref(&good)).unwrap();
        let forged = mint(&evil, &claims("r", &[Grant::Publish], u64::MAX / 2)).unwrap();
        assert_eq!(
            v.verify(&forged, "r", Grant::Publish, 0),
            Err(TokenError::BadSignature)
        );
        for junk in ["", "a.b.c", "not a token", "eyJ.eyJ.x"] {
            let err = v.verify(junk, "r", Grant::Publish, 0).unwrap_err();
            assert!(err.is_unauthenticated(), "{junk}: {err:?}");
        }
        // A token whose payload was edited after signing.
        let t = mint(&good, &claims("r", &[Grant::Subscribe], u64::MAX / 2)).unwrap();
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let other = mint(&good, &claims("r", &[Grant::Publish], u64::MAX / 2)).unwrap();
        parts[1] = other.split('.').nth(1).unwrap().to_owned();
        parts[2] = t.split('.').nth(2).unwrap().to_owned();
        assert_eq!(
            v.verify(&parts.join("."), "r", Grant::Publish, 0),
            Err(TokenError::BadSignature)
        );
    }

    /// `header.payload.signature` with the given header and payload JSON, base64url.
    fn raw_token(header: &str, payload: &str, signature: &str) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.{signature}", b64.encode(header), b64.encode(payload))
    }

    #[test]
    fn only_hs256_is_accepted() {
        let s = TokenSecret::parse("s3cret");
        let v = TokenVerifier::new(std::slice::from_ref(&s)).unwrap();
        let payload = r#"{"sub":"alice","room":"r","grants":["publish"],"exp":5000,"iat":1000}"#;
        // Unsigned (`alg: none`), with and without a signature part.
        for sig in ["", "AAAA"] {
            let t = raw_token(r#"{"alg":"none","typ":"JWT"}"#, payload, sig);
            let err = v.verify(&t, "r", Grant::Publish, 2_000).unwrap_err();
            assert_eq!(err.code(), "token_malformed", "{err}");
        }
        // HS384 with the right secret: a valid token of another algorithm.
        let mut header = Header::new(Algorithm::HS384);
        header.kid = None;
        let hs384 = jsonwebtoken::encode(
            &header,
            &claims("r", &[Grant::Publish], 5_000),
            &EncodingKey::from_secret(&s.secret),
        )
        .unwrap();
        let err = v.verify(&hs384, "r", Grant::Publish, 2_000).unwrap_err();
        assert_eq!(err.code(), "token_malformed", "{err}");
        // RS256 (the key-confusion attack signs with the HMAC secret as "public key").
        let hs256 = mint(&s, &claims("r", &[Grant::Publish], 5_000)).unwrap();
        let sig = hs256.split('.').nth(2).unwrap();
        let t = raw_token(r#"{"alg":"RS256","typ":"JWT"}"#, payload, sig);
        let err = v.verify(&t, "r", Grant::Publish, 2_000).unwrap_err();
        assert_eq!(err.code(), "token_malformed", "{err}");
        // The same claims in HS256 verify: the refusals above are about the algorithm.
        assert!(v.verify(&hs256, "r", Grant::Publish, 2_000).is_ok());
    }

    #[test]
    fn tampered_signature_is_refused() {
        let s = TokenSecret::parse("s3cret");
        let v = TokenVerifier::new(std::slice::from_ref(&s)).unwrap();
        let t = mint(&s, &claims("r", &[Grant::Publish], 5_000)).unwrap();
        let (head, sig) = t.rsplit_once('.').unwrap();
        let mut bytes = sig.as_bytes().to_vec();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{head}.{}", String::from_utf8(bytes).unwrap());
        assert_eq!(
            v.verify(&tampered, "r", Grant::Publish, 2_000),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn lifetime_is_bounded() {
        let s = TokenSecret::parse("s3cret");
        let v = TokenVerifier::new(std::slice::from_ref(&s))
            .unwrap()
            .with_max_lifetime(3_600);
        let now = 10_000;
        let token = |iat: u64, exp: u64| {
            mint(
                &s,
                &Claims {
                    iat,
                    ..claims("r", &[Grant::Publish], exp)
                },
            )
            .unwrap()
        };
        assert!(
            v.verify(&token(now, now + 3_600), "r", Grant::Publish, now)
                .is_ok()
        );
        assert_eq!(
            v.verify(&token(now, now + 3_601), "r", Grant::Publish, now),
            Err(TokenError::LifetimeTooLong {
                lifetime: 3_601,
                max: 3_600
            })
        );
        // Ten years.
        let err = v
            .verify(
                &token(now, now + 10 * 365 * 86_400),
                "r",
                Grant::Publish,
                now,
            )
            .unwrap_err();
        assert_eq!(err.code(), "token_lifetime_too_long");
        assert!(err.is_unauthenticated());
        // No iat: counted from now.
        assert!(
            v.verify(&token(0, now + 3_000), "r", Grant::Publish, now)
                .is_ok()
        );
        assert!(
            v.verify(&token(0, now + 4_000), "r", Grant::Publish, now)
                .is_err()
        );
        let no_iat = raw_token(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &format!(
                r#"{{"sub":"a","room":"r","grants":["publish"],"exp":{}}}"#,
                now + 100
            ),
            "x",
        );
        // (Parses without iat; the made-up signature is what fails.)
        assert_eq!(
            v.verify(&no_iat, "r", Grant::Publish, now),
            Err(TokenError::BadSignature)
        );
        // An issue time in the future does not stretch the lifetime.
        assert!(
            v.verify(&token(now + 50_000, now + 52_000), "r", Grant::Publish, now)
                .is_err()
        );
        // Without a maximum, any lifetime.
        let any = TokenVerifier::new(std::slice::from_ref(&s)).unwrap();
        assert!(
            any.verify(&token(now, u64::MAX / 2), "r", Grant::Publish, now)
                .is_ok()
        );
    }

    #[test]
    fn cluster_tokens_are_not_user_tokens() {
        let cluster = TokenSecret::parse("cluster-key");
        let t = mint_cluster(&cluster, "m2", 100, 60).unwrap();
        assert_eq!(verify_cluster(&cluster, &t, 120).unwrap().sub, "m2");
        assert_eq!(verify_cluster(&cluster, &t, 200), Err(TokenError::Expired));
        assert_eq!(
            verify_cluster(&TokenSecret::parse("other"), &t, 120),
            Err(TokenError::BadSignature)
        );
        // A user token signed with the same key has no cluster audience.
        let user = mint(&cluster, &claims("r", &[Grant::Publish], 500)).unwrap();
        assert!(verify_cluster(&cluster, &user, 120).is_err());
        // And a cluster token is no user token.
        let v = TokenVerifier::new(std::slice::from_ref(&cluster)).unwrap();
        assert!(v.verify(&t, "r", Grant::Subscribe, 120).is_err());
    }

    #[test]
    fn key_rotation_by_kid() {
        let old = TokenSecret::parse("k1:old-secret");
        let new = TokenSecret::parse("k2:new-secret");
        let v = TokenVerifier::new(&[new.clone(), old.clone()]).unwrap();
        for s in [&old, &new] {
            let t = mint(s, &claims("r", &[Grant::Publish], 10)).unwrap();
            assert!(v.verify(&t, "r", Grant::Publish, 5).is_ok());
        }
        let unknown = TokenSecret::parse("k9:whatever");
        let t = mint(&unknown, &claims("r", &[Grant::Publish], 10)).unwrap();
        assert_eq!(
            v.verify(&t, "r", Grant::Publish, 5),
            Err(TokenError::UnknownKey("k9".into()))
        );
    }
}
