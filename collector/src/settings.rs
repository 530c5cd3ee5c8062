//! The source settings browser libraries load before they send anything.
//!
//! analytics.js reads them from Segment's CDN: `GET /v1/projects/{writeKey}/settings`. It asks for
//! `{cdnURL}/v1/projects/{writeKey}/settings`, so a page that loads it with `cdnURL` set to the
//! collector needs no other setting. The answer names the collector as the Segment.io
//! destination's `apiHost`, lists no other destination (so analytics.js fetches no destination
//! code from anywhere), and sets the sample rate of analytics.js's own performance metrics to 0
//! (by default it sends them to Segment).
//!
//! RudderStack's JavaScript SDK reads `GET {configUrl}/sourceConfig/?writeKey=…` (the key also
//! as Basic auth) and sends to its `dataPlaneUrl`, so both can be the collector. The answer
//! lists no device-mode destination and turns off the SDK's error and metrics reports (sent to
//! RudderStack otherwise).

use crate::AppState;
use crate::auth::basic_write_key;
use crate::error::ApiError;
use crate::ingest::{query_write_key, source_for};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, HOST, VARY};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::SocketAddr;

/// How long browsers (and, with `--public-url`, shared caches) may keep the settings.
const MAX_AGE_SECS: u32 = 300;

/// Where browsers reach the collector's API, from `--public-url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    protocol: &'static str,
    /// Host, port and path prefix, without the scheme: `cdp.shop.example/seam`.
    host_path: String,
}

impl PublicUrl {
    /// An `http://` or `https://` URL with a host, an optional port and an optional path; the
    /// error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (protocol, rest) = if let Some(rest) = url.strip_prefix("https://") {
            ("https", rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            ("http", rest)
        } else {
            return Err(format!("`{url}` does not start with http:// or https://"));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !is_authority(authority) {
            return Err(format!(
                "`{url}`: `{authority}` is not a host name or address with an optional port"
            ));
        }
        if !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
        {
            return Err(format!(
                "`{url}`: the path may hold only letters, digits and - . _ ~ / (no query or fragment)"
            ));
        }
        Ok(PublicUrl {
            protocol,
            host_path: format!("{authority}{}", path.trim_end_matches('/')),
        })
    }
}

/// A `Host` header's shape: a DNS name or IPv4 address, or a bracketed IPv6 address, with an
/// optional port. Anything else is refused rather than echoed into the settings.
fn is_authority(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, Some(p)),
        _ => (s, None),
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// `GET /v1/projects/{writeKey}/settings`: 401 for an unknown write key and 403 for an origin
/// its source does not allow, as ingestion answers them. The API address is `--public-url`;
/// without it, the request's `Host`, over `https` only when a trusted proxy forwarded the
/// request with `X-Forwarded-Proto: https` (seam itself speaks plain HTTP).
pub(crate) async fn settings(
    State(state): State<AppState>,
    Path(write_key): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    source_for(&state, &write_key, headers)?;
    let (protocol, host_path, cache) = match &state.sources.public_url {
        Some(url) => (url.protocol, url.host_path.clone(), "public"),
        None => {
            let host = headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| is_authority(h))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_host",
                        "the Host header is missing or not a host name; set --public-url to the address browsers reach the collector at",
                    )
                })?;
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            let forwarded_https = peer.is_some_and(|p| state.sources.trusted_proxies.trusts(p))
                && headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(',').next())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
            let protocol = if forwarded_https { "https" } else { "http" };
            // Built from this request's headers, so no shared cache may hand it to another.
            (protocol, host.to_owned(), "private")
        }
    };
    let body = json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": format!("{host_path}/v1"),
                "protocol": protocol,
            }
        },
        "plan": {
            "track": {"__default": {"enabled": true, "integrations": {}}},
            "identify": {"__default": {"enabled": true}},
            "group": {"__default": {"enabled": true}},
        },
        "metrics": {"sampleRate": 0},
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
    });
    Ok(cached_json(body, cache))
}

/// `GET /sourceConfig/?writeKey=…`, RudderStack's source configuration: the key from the
/// query or HTTP Basic auth (either is enough), then 401 and 403 as for ingestion.
pub(crate) async fn source_config(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    let write_key = match query_write_key(request.uri())? {
        Some(key) => key,
        None => basic_write_key(headers)?.ok_or_else(|| {
            ApiError::Unauthorized(
                "missing write key: send it as the writeKey query parameter or as HTTP Basic auth user name".into(),
            )
        })?,
    };
    source_for(&state, &write_key, headers)?;
    let name = state
        .sources
        .get(&write_key)
        .map_or(write_key.as_str(), |s| s.name.as_str());
    let body = json!({
        "isHosted": false,
        "source": {
            "id": name,
            "name": name,
            "writeKey": write_key,
            "workspaceId": "seam",
            "enabled": true,
            "config": {
                "statsCollection": {
                    "errors": {"enabled": false},
                    "metrics": {"enabled": false},
                }
            },
            "destinations": [],
        }
    });
    Ok(cached_json(body, "private"))
}

/// `body` as JSON that caches may keep for [`MAX_AGE_SECS`]; `scope` is `public` or `private`.
/// Always `Vary: Origin`: the CORS headers depend on it, and a shared cache must not hand an
/// answer to a request without an `Origin` (which gets none) to a browser's.
fn cached_json(body: serde_json::Value, scope: &str) -> Response {
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_str(&format!("{scope}, max-age={MAX_AGE_SECS}"))
            .expect("a valid header value"),
    );
    headers.insert(VARY, HeaderValue::from_static("Origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_keep_scheme_host_port_and_path() {
        let url = PublicUrl::parse("https://cdp.shop.example:8443/seam/").unwrap();
        assert_eq!(url.protocol, "https");
        assert_eq!(url.host_path, "cdp.shop.example:8443/seam");
        let url = PublicUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (url.protocol, url.host_path.as_str()),
            ("http", "[::1]:8080")
        );
    }

    #[test]
    fn bad_public_urls_say_what_is_wrong() {
        for (url, why) in [
            ("cdp.shop.example", "does not start with http"),
            ("ftp://cdp.shop.example", "does not start with http"),
            ("https://", "is not a host name"),
            ("https://user@cdp.shop.example", "is not a host name"),
            ("https://cdp.shop.example:0", "is not a host name"),
            ("https://cdp.shop.example:99999", "is not a host name"),
            ("https://cdp.shop.example/a?b=c", "no query"),
            ("https://cdp.shop.example/<script>", "no query"),
        ] {
            let err = PublicUrl::parse(url).expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn only_host_shapes_pass_as_an_authority() {
        for ok in [
            "localhost",
            "127.0.0.1:8080",
            "shop.example",
            "[2001:db8::1]:443",
        ] {
            assert!(is_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example\"",
            "a b",
            "[not-v6]",
            "2001:db8::1",
            "x:",
            "h:1:2",
        ] {
            assert!(!is_authority(bad), "{bad}");
        }
    }
}
