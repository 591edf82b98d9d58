//! JWT for the HTTP API (and, optionally, for WebSocket connects).
//!
//! `exp` is required and checked, `nbf` honoured. A token with a `systemId` claim is valid
//! only for that system. An operator token (any system, `register`) says so explicitly with
//! `"role": "operator"` (what `roomcast token` mints): a token that names neither — minted with
//! the same secret for some other purpose, say — is refused (403). Without a key the API is
//! open (allowed only on loopback; see `config`).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Claims roomcast reads and writes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(rename = "systemId", default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    /// `"operator"` on operator tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// The `role` claim of an operator token.
pub const OPERATOR: &str = "operator";

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// 401: no token, malformed, bad signature, expired, not yet valid.
    Unauthorized(String),
    /// 403: a valid token for another system, or a system token where an operator one is needed.
    Forbidden(String),
}

impl AuthError {
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Unauthorized(_) => 401,
            AuthError::Forbidden(_) => 403,
        }
    }
    pub fn message(&self) -> &str {
        match self {
            AuthError::Unauthorized(m) | AuthError::Forbidden(m) => m,
        }
    }
}

/// What the request needs the token to allow.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// Operator only (`register`).
    Operator,
    /// Act on this system.
    System(&'a str),
}

/// A token verifier; `None` key means the API is open.
pub struct Verifier {
    key: Option<(DecodingKey, Validation)>,
}

impl Verifier {
    /// An open verifier: every request is allowed.
    pub fn open() -> Self {
        Verifier { key: None }
    }

    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::with(DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// RS256 or ES256 with a PEM public key.
    pub fn public_key(pem: &[u8], alg: Algorithm) -> Result<Self, String> {
        let key = match alg {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
            Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
            other => return Err(format!("unsupported JWT algorithm {other:?}: use RS256 or ES256")),
        }
        .map_err(|e| format!("cannot read the JWT public key: {e}"))?;
        Ok(Self::with(key, alg))
    }

    fn with(key: DecodingKey, alg: Algorithm) -> Self {
        let mut v = Validation::new(alg);
        v.set_required_spec_claims(&["exp"]);
        v.validate_exp = true;
        v.validate_nbf = true;
        v.leeway = 0;
        Verifier { key: Some((key, v)) }
    }

    /// Checks an `Authorization` header value (`Bearer <token>`) or a bare token.
    pub fn check(&self, authorization: Option<&str>, scope: Scope<'_>) -> Result<(), AuthError> {
        let Some((key, validation)) = &self.key else { return Ok(()) };
        let raw =
            authorization.ok_or_else(|| AuthError::Unauthorized("missing Authorization: Bearer <token>".into()))?;
        let token = raw.strip_prefix("Bearer ").or_else(|| raw.strip_prefix("bearer ")).unwrap_or(raw).trim();
        if token.is_empty() {
            return Err(AuthError::Unauthorized("missing Authorization: Bearer <token>".into()));
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| AuthError::Unauthorized(format!("invalid token: {e}")))?;
        match (scope, data.claims.system_id.as_deref()) {
            (_, None) if data.claims.role.as_deref() == Some(OPERATOR) => Ok(()),
            (_, None) => Err(AuthError::Forbidden(
                "token has neither a systemId claim nor \"role\":\"operator\" (mint tokens with `roomcast token`)"
                    .into(),
            )),
            (Scope::Operator, Some(_)) => {
                Err(AuthError::Forbidden("this endpoint needs an operator token (without systemId)".into()))
            }
            (Scope::System(s), Some(claim)) if claim == s => Ok(()),
            (Scope::System(_), Some(_)) => Err(AuthError::Forbidden("token is not valid for this systemId".into())),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Mints an HS256 token valid for `ttl_secs`; `system` scopes it, `None` makes an operator token.
pub fn mint_hs256(secret: &[u8], system: Option<&str>, ttl_secs: u64) -> Result<String, String> {
    let now = now_secs();
    let role = system.is_none().then(|| OPERATOR.to_string());
    let claims = Claims { exp: now + ttl_secs, iat: Some(now), system_id: system.map(str::to_string), role };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))
        .map_err(|e| format!("cannot sign token: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_and_operator_tokens() {
        let v = Verifier::hs256(b"k");
        let op = mint_hs256(b"k", None, 60).unwrap();
        let s1 = mint_hs256(b"k", Some("s1"), 60).unwrap();
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(v.check(Some(&bearer(&op)), Scope::Operator), Ok(()));
        assert_eq!(v.check(Some(&bearer(&op)), Scope::System("s2")), Ok(()));
        assert_eq!(v.check(Some(&bearer(&s1)), Scope::System("s1")), Ok(()));
        assert_eq!(v.check(Some(&bearer(&s1)), Scope::System("s2")).unwrap_err().status(), 403);
        assert_eq!(v.check(Some(&bearer(&s1)), Scope::Operator).unwrap_err().status(), 403);
        assert_eq!(v.check(None, Scope::Operator).unwrap_err().status(), 401);
        assert_eq!(v.check(Some("Bearer garbage"), Scope::Operator).unwrap_err().status(), 401);
        let other = mint_hs256(b"other", None, 60).unwrap();
        assert_eq!(v.check(Some(&bearer(&other)), Scope::Operator).unwrap_err().status(), 401);
    }

    #[test]
    fn exp_is_required_and_checked() {
        let v = Verifier::hs256(b"k");
        let key = EncodingKey::from_secret(b"k");
        let expired = Claims { exp: now_secs() - 10, iat: None, system_id: None, role: Some(OPERATOR.into()) };
        let t = jsonwebtoken::encode(&Header::default(), &expired, &key).unwrap();
        assert_eq!(v.check(Some(&t), Scope::Operator).unwrap_err().status(), 401);
        let no_exp = serde_json::json!({"systemId": "s1"});
        let t = jsonwebtoken::encode(&Header::default(), &no_exp, &key).unwrap();
        assert_eq!(v.check(Some(&t), Scope::System("s1")).unwrap_err().status(), 401);
        let future = serde_json::json!({"exp": now_secs() + 100, "nbf": now_secs() + 50, "role": "operator"});
        let t = jsonwebtoken::encode(&Header::default(), &future, &key).unwrap();
        assert_eq!(v.check(Some(&t), Scope::Operator).unwrap_err().status(), 401);
    }

    /// Regression (security review, low): any token without `systemId` (or with
    /// `"systemId": null`) was an operator token.
    #[test]
    fn operator_tokens_say_so() {
        let v = Verifier::hs256(b"k");
        let key = EncodingKey::from_secret(b"k");
        let exp = now_secs() + 60;
        for claims in [
            serde_json::json!({"exp": exp}),
            serde_json::json!({"exp": exp, "systemId": null}),
            serde_json::json!({"exp": exp, "role": "admin"}),
        ] {
            let t = jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap();
            assert_eq!(v.check(Some(&t), Scope::Operator).unwrap_err().status(), 403, "{claims}");
            assert_eq!(v.check(Some(&t), Scope::System("s")).unwrap_err().status(), 403, "{claims}");
        }
        let t = jsonwebtoken::encode(&Header::default(), &serde_json::json!({"exp": exp, "role": "operator"}), &key);
        assert_eq!(v.check(Some(&t.unwrap()), Scope::Operator), Ok(()));
    }

    #[test]
    fn open_verifier_allows_everything() {
        assert_eq!(Verifier::open().check(None, Scope::Operator), Ok(()));
    }
}
