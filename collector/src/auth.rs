//! Authentication: the admin bearer-token extractor any admin route reuses, and reading the
//! write key from HTTP Basic auth.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;

/// Proof that the request carries the admin token (`Authorization: Bearer TOKEN`). Add it as a
/// handler argument: `async fn handler(_: AdminAuth, State(state): State<AppState>, …)`.
/// Missing or wrong token → 401 `unauthorized`.
#[derive(Clone, Copy, Debug)]
pub struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check_admin(&parts.headers, state.config.admin_token.as_deref())
    }
}

/// The check behind [`AdminAuth`], usable without an extractor.
pub fn check_admin(headers: &HeaderMap, token: Option<&str>) -> Result<AdminAuth, ApiError> {
    let Some(expected) = token else {
        return Err(ApiError::Unauthorized(
            "the admin API is disabled: start seam with --admin-token".into(),
        ));
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::Unauthorized("missing `Authorization: Bearer <admin token>` header".into())
        })?;
    if constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
        Ok(AdminAuth)
    } else {
        Err(ApiError::Unauthorized("wrong admin token".into()))
    }
}

/// Compares without an early exit, so response time does not reveal how much of a guess matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// A fresh random token (32 hex characters) for `seam demo` without `--admin-token`.
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The write key from `Authorization: Basic base64(KEY:)`, if the header is there.
/// A header that is present but malformed is an error, not silently ignored.
pub fn basic_write_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = |why: &str| ApiError::Unauthorized(format!("Authorization header: {why}"));
    let text = value.to_str().map_err(|_| bad("not ASCII"))?;
    let Some(encoded) = text
        .strip_prefix("Basic ")
        .or_else(|| text.strip_prefix("basic "))
    else {
        return Err(bad(
            "expected `Basic base64(WRITE_KEY:)` or `writeKey` in the body",
        ));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad("Basic credentials are not valid base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad("Basic credentials are not UTF-8"))?;
    let user = decoded.split(':').next().unwrap_or_default();
    Ok((!user.is_empty()).then(|| user.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn constant_time_eq_matches_only_equal_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn basic_auth_user_name_is_the_write_key() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_write_key(&h).unwrap(), None);
        // "WK_test_123:" as the Segment and RudderStack clients send it.
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic V0tfdGVzdF8xMjM6"),
        );
        assert_eq!(basic_write_key(&h).unwrap().as_deref(), Some("WK_test_123"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(
            basic_write_key(&h)
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
    }
}
