//! JWT for the HTTP API and for WebSocket connects.
//!
//! Three kinds of token, one key. `exp` is required and checked on each, `nbf` honoured.
//!
//! - **System token** (`systemId`): the API for that system only.
//! - **Operator token** (`"role": "operator"`, no `systemId`): the API for any system, and
//!   `register`. A token that names neither — minted with the same secret for some other
//!   purpose, say — is refused (403).
//! - **Connect token** (`"scope": "connect"`, `systemId`, optional `sub` and `groups`): opens a
//!   WebSocket to that system as that user, already in those groups. It never calls the API
//!   (403), and an API token never opens a WebSocket: a page holds only a connect token, so
//!   whoever reads it from the page cannot push to or close the system's clients.
//!
//! Without a key the API is open (allowed only on loopback; see `config`) and a connect token
//! cannot be checked, so one that is given is refused.

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
    /// `"connect"` on connect tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Connect tokens: the connection's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Connect tokens: groups joined at connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

/// The `scope` claim of a connect token.
pub const CONNECT: &str = "connect";

/// What a valid connect token grants its connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// The user (`sub`): the `userId` of binds that name none, and of `client_connected`.
    pub sub: Option<Box<str>>,
    /// Groups joined at connect, as binds with `userId` = `sub` (deduplicated, in order).
    pub groups: Vec<Box<str>>,
}

impl Grant {
    /// Whether it changes anything about the connection (else it connects as without a token).
    pub fn is_empty(&self) -> bool {
        self.sub.is_none() && self.groups.is_empty()
    }
}

/// Whether a `/ws` connect may get a fresh session, and with what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    /// No token needed and none given.
    Open,
    /// A valid connect token.
    Granted(Box<Grant>),
    /// Only a resume could be honoured (with `ws_auth`, a resume without a connect token);
    /// a fresh session is refused with this message.
    ResumeOnly(Box<str>),
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
        if data.claims.scope.is_some() {
            return Err(AuthError::Forbidden("connect tokens cannot call the API".into()));
        }
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

/// The message for a `/ws` connect without the token `ws_auth` requires.
pub const MISSING_CONNECT_TOKEN: &str =
    "missing ?token=<connect token>: the back end mints one per user (scope \"connect\"; `roomcast token --connect`)";

impl Verifier {
    /// Checks the `?token=` of a `/ws` connect to `system`. `required` (`ws_auth`): a connect
    /// without one is refused. A token given is checked either way: only a valid connect token
    /// for this system passes; an API token is refused with a message that says what to mint.
    pub fn connect(&self, token: Option<&str>, system: &str, required: bool) -> Result<Option<Grant>, AuthError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let Some(token) = token else {
            return match required {
                true => Err(AuthError::Unauthorized(MISSING_CONNECT_TOKEN.into())),
                false => Ok(None),
            };
        };
        let Some((key, validation)) = &self.key else {
            return Err(AuthError::Unauthorized(
                "a ?token= was given but this server has no JWT key to check it: connect without one, or configure jwt_secret / jwt_public_key".into(),
            ));
        };
        let c = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| AuthError::Unauthorized(format!("invalid token: {e}")))?
            .claims;
        if c.scope.as_deref() != Some(CONNECT) {
            return Err(AuthError::Forbidden(
                "an API token cannot open a WebSocket (a page holding it could call the API): mint a connect token (\"scope\":\"connect\") for this system and user".into(),
            ));
        }
        match c.system_id.as_deref() {
            Some(s) if s == system => {}
            Some(_) => return Err(AuthError::Forbidden("the connect token is not valid for this systemId".into())),
            None => return Err(AuthError::Forbidden("the connect token has no systemId claim".into())),
        }
        let mut groups: Vec<Box<str>> = Vec::new();
        for g in c.groups.unwrap_or_default() {
            if !groups.iter().any(|h| **h == *g) {
                groups.push(g.into());
            }
        }
        // An empty `sub` names nobody: the connection has no user (as without the claim).
        let sub = c.sub.filter(|s| !s.is_empty()).map(Into::into);
        Ok(Some(Grant { sub, groups }))
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
    let role = system.is_none().then(|| OPERATOR.to_string());
    let claims = Claims { role, ..claims(system, ttl_secs) };
    sign_hs256(secret, &claims)
}

/// Mints an HS256 connect token for `system`, as user `sub`, joining `groups` at connect.
pub fn mint_connect_hs256(
    secret: &[u8],
    system: &str,
    sub: Option<&str>,
    groups: &[String],
    ttl_secs: u64,
) -> Result<String, String> {
    let claims = Claims {
        scope: Some(CONNECT.into()),
        sub: sub.map(str::to_string),
        groups: (!groups.is_empty()).then(|| groups.to_vec()),
        ..claims(Some(system), ttl_secs)
    };
    sign_hs256(secret, &claims)
}

fn claims(system: Option<&str>, ttl_secs: u64) -> Claims {
    let now = now_secs();
    Claims {
        exp: now + ttl_secs,
        iat: Some(now),
        system_id: system.map(str::to_string),
        role: None,
        scope: None,
        sub: None,
        groups: None,
    }
}

fn sign_hs256(secret: &[u8], claims: &Claims) -> Result<String, String> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))
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
        let expired = Claims { exp: now_secs() - 10, role: Some(OPERATOR.into()), ..claims(None, 0) };
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

    /// Security review, high: a page's token could call the API, and an API token opened
    /// WebSockets. Connect tokens do only the one, API tokens only the other.
    #[test]
    fn connect_tokens_connect_and_api_tokens_call() {
        let v = Verifier::hs256(b"k");
        let groups = ["g1".to_string(), "g2".to_string(), "g1".to_string()];
        let c = mint_connect_hs256(b"k", "s1", Some("alice"), &groups, 60).unwrap();
        assert_eq!(
            v.check(Some(&c), Scope::System("s1")).unwrap_err(),
            AuthError::Forbidden("connect tokens cannot call the API".into())
        );
        assert_eq!(v.check(Some(&c), Scope::Operator).unwrap_err().status(), 403);
        let g = v.connect(Some(&c), "s1", true).unwrap().unwrap();
        assert_eq!(g.sub.as_deref(), Some("alice"));
        assert_eq!(g.groups, vec!["g1".into(), "g2".into()] as Vec<Box<str>>);
        assert_eq!(v.connect(Some(&c), "s2", true).unwrap_err().status(), 403);
        for api in [mint_hs256(b"k", Some("s1"), 60).unwrap(), mint_hs256(b"k", None, 60).unwrap()] {
            let e = v.connect(Some(&api), "s1", true).unwrap_err();
            assert!(e.message().contains("mint a connect token"), "{e:?}");
            assert_eq!(v.connect(Some(&api), "s1", false).unwrap_err().status(), 403);
        }
        assert!(v.connect(None, "s1", true).unwrap_err().message().contains("?token="));
        assert_eq!(v.connect(None, "s1", false), Ok(None));
        assert_eq!(v.connect(Some("garbage"), "s1", false).unwrap_err().status(), 401);
        let bare = mint_connect_hs256(b"k", "s1", None, &[], 60).unwrap();
        assert!(v.connect(Some(&bare), "s1", true).unwrap().unwrap().is_empty());
        assert_eq!(Verifier::open().connect(Some(&bare), "s1", false).unwrap_err().status(), 401);
    }

    #[test]
    fn open_verifier_allows_everything() {
        assert_eq!(Verifier::open().check(None, Scope::Operator), Ok(()));
    }
}
