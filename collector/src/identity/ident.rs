//! Typed identifiers, their normalisation, blocked values and the per-type limits and priorities.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// The type of an identifier. Custom types come from `context.externalIds`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdType {
    UserId,
    Email,
    AnonymousId,
    Phone,
    Custom(String),
}

impl IdType {
    pub fn as_str(&self) -> &str {
        match self {
            IdType::UserId => "user_id",
            IdType::Email => "email",
            IdType::AnonymousId => "anonymous_id",
            IdType::Phone => "phone",
            IdType::Custom(s) => s,
        }
    }

    /// Parses a type name; custom names are lower-case letters, digits, `_`, `-` and `.`.
    pub fn parse(s: &str) -> Result<IdType, String> {
        Ok(match s {
            "user_id" => IdType::UserId,
            "email" => IdType::Email,
            "anonymous_id" => IdType::AnonymousId,
            "phone" => IdType::Phone,
            _ => {
                let ok = !s.is_empty()
                    && s.len() <= 64
                    && s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b)
                    });
                if !ok {
                    return Err(format!(
                        "identifier type `{s}` is not one of user_id, email, anonymous_id, phone \
                         or a custom type of lower-case letters, digits, `_`, `-`, `.`"
                    ));
                }
                IdType::Custom(s.to_string())
            }
        })
    }
}

/// A typed, normalised identifier: one node of the identity graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier {
    pub kind: IdType,
    pub value: String,
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.value)
    }
}

/// `{"type", "value"}` as the API shows identifiers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifierJson {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl From<&Identifier> for IdentifierJson {
    fn from(id: &Identifier) -> Self {
        IdentifierJson {
            kind: id.kind.as_str().to_string(),
            value: id.value.clone(),
        }
    }
}

/// Limits, priorities and blocked values; every part is configurable.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// Values (compared after trimming and lower-casing) that are never identifiers.
    pub blocked: Vec<String>,
    /// Per type: (limit per profile, priority; 1 is the highest).
    pub rules: HashMap<IdType, (usize, u32)>,
    /// Limit and priority for types not in `rules` (custom external IDs).
    pub default_rule: (usize, u32),
}

impl Default for IdentityConfig {
    fn default() -> Self {
        let blocked = [
            "",
            "null",
            "nil",
            "none",
            "undefined",
            "anonymous",
            "guest",
            "unknown",
            "0",
            "-1",
            "[object object]",
            "nan",
            "true",
            "false",
            "n/a",
            "na",
            "test",
            "user",
            "email",
            "{}",
            "[]",
        ];
        IdentityConfig {
            blocked: blocked.iter().map(|s| s.to_string()).collect(),
            rules: HashMap::from([
                (IdType::UserId, (1, 1)),
                (IdType::Email, (5, 2)),
                (IdType::Phone, (5, 4)),
                (IdType::AnonymousId, (10_000, 3)),
            ]),
            default_rule: (5, 5),
        }
    }
}

/// Identity settings on the command line; each also an environment variable.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct IdentityFlags {
    /// A value never taken as an identifier, besides the built-in placeholders (`null`,
    /// `undefined`, `guest`, `0`, …); repeatable, the env variable is comma-separated.
    #[arg(
        long = "identity-blocked",
        env = "SEAM_IDENTITY_BLOCKED",
        value_delimiter = ',',
        value_name = "VALUE"
    )]
    pub blocked: Vec<String>,
    /// Per-profile limit and priority of an identifier type, `TYPE=LIMIT[:PRIORITY]`, e.g.
    /// `email=3` or `crm_id=1:2` (priority 1 is kept first); repeatable, env comma-separated.
    #[arg(
        long = "identity-limit",
        env = "SEAM_IDENTITY_LIMITS",
        value_delimiter = ',',
        value_name = "RULE"
    )]
    pub limits: Vec<String>,
}

impl IdentityFlags {
    /// The defaults with these flags applied; the error names the rule at fault.
    pub fn to_config(&self) -> Result<IdentityConfig, String> {
        let mut config = IdentityConfig::default();
        config
            .blocked
            .extend(self.blocked.iter().map(|b| b.trim().to_lowercase()));
        for rule in &self.limits {
            let bad = |why: &str| {
                format!("`{rule}`: {why} (expected TYPE=LIMIT[:PRIORITY], e.g. email=3:2)")
            };
            let (kind, rest) = rule.split_once('=').ok_or_else(|| bad("no `=`"))?;
            let kind = IdType::parse(kind.trim()).map_err(|e| bad(&e))?;
            let (limit, priority) = match rest.split_once(':') {
                Some((l, p)) => (l, Some(p)),
                None => (rest, None),
            };
            let limit: usize = limit
                .trim()
                .parse()
                .ok()
                .filter(|l| *l >= 1)
                .ok_or_else(|| bad("LIMIT must be a number ≥ 1"))?;
            let priority = match priority {
                Some(p) => p
                    .trim()
                    .parse()
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or_else(|| bad("PRIORITY must be a number ≥ 1"))?,
                None => config.priority(&kind),
            };
            config.rules.insert(kind, (limit, priority));
        }
        Ok(config)
    }
}

impl IdentityConfig {
    pub fn limit(&self, kind: &IdType) -> usize {
        self.rules.get(kind).unwrap_or(&self.default_rule).0
    }

    pub fn priority(&self, kind: &IdType) -> u32 {
        self.rules.get(kind).unwrap_or(&self.default_rule).1
    }

    /// Normalises a raw value of a type; `None` when it is blocked or malformed.
    pub fn normalise(&self, kind: IdType, raw: &str) -> Option<Identifier> {
        let trimmed = raw.trim();
        let value = match kind {
            IdType::Email => {
                let v = trimmed.to_lowercase();
                let (local, domain) = v.split_once('@')?;
                if local.is_empty() || domain.is_empty() || domain.contains('@') {
                    return None;
                }
                v
            }
            IdType::Phone => {
                let digits: String = trimmed.chars().filter(|c| c.is_ascii_digit()).collect();
                if digits.len() < 5 {
                    return None;
                }
                if trimmed.starts_with('+') {
                    format!("+{digits}")
                } else {
                    digits
                }
            }
            _ => trimmed.to_string(),
        };
        if value.len() > 512 || self.is_blocked(&value) {
            return None;
        }
        Some(Identifier { kind, value })
    }

    /// Blocked values are stored lower-cased; most values are ASCII and compare without a copy.
    fn is_blocked(&self, value: &str) -> bool {
        if value.is_ascii() {
            return self
                .blocked
                .iter()
                .any(|b| b.len() == value.len() && b.eq_ignore_ascii_case(value));
        }
        let lower = value.to_lowercase();
        self.blocked.contains(&lower)
    }

    /// Parses `{type}:{value}` from a (percent-decoded) path segment.
    pub fn parse_path(&self, s: &str) -> Result<Identifier, String> {
        let (kind, value) = s.split_once(':').ok_or_else(|| {
            format!("identifier `{s}` must be `type:value`, e.g. `user_id:42` or `email:a%40b.c`")
        })?;
        let kind = IdType::parse(kind)?;
        let name = kind.as_str().to_string();
        self.normalise(kind, value)
            .ok_or_else(|| format!("`{value}` is not a valid {name} (empty, blocked or malformed)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        let c = IdentityConfig::default();
        let id = c.normalise(IdType::Email, "  Ann@Example.COM ").unwrap();
        assert_eq!(id.value, "ann@example.com");
    }

    #[test]
    fn placeholder_values_are_never_identifiers() {
        let c = IdentityConfig::default();
        for v in [
            "",
            "  ",
            "null",
            "undefined",
            "Anonymous",
            "guest",
            "0",
            "-1",
            "[object Object]",
            "NaN",
        ] {
            assert!(
                c.normalise(IdType::UserId, v).is_none(),
                "{v:?} should be blocked"
            );
        }
        assert!(c.normalise(IdType::UserId, "42").is_some());
    }

    #[test]
    fn blocked_list_is_configurable() {
        let mut c = IdentityConfig::default();
        c.blocked.push("demo-user".into());
        assert!(c.normalise(IdType::UserId, "DEMO-USER").is_none());
    }

    #[test]
    fn flags_add_blocked_values_and_change_limits() {
        let flags = IdentityFlags {
            blocked: vec!["Demo-User".into()],
            limits: vec!["email=2".into(), "crm_id=1:2".into()],
        };
        let c = flags.to_config().unwrap();
        assert!(c.normalise(IdType::UserId, "demo-user").is_none());
        assert_eq!(c.limit(&IdType::Email), 2);
        assert_eq!(c.priority(&IdType::Email), 2);
        assert_eq!(c.limit(&IdType::Custom("crm_id".into())), 1);
        let bad = IdentityFlags {
            blocked: vec![],
            limits: vec!["email=zero".into()],
        };
        assert!(bad.to_config().unwrap_err().contains("email=zero"));
    }

    #[test]
    fn path_identifiers_name_what_is_wrong() {
        let c = IdentityConfig::default();
        assert_eq!(c.parse_path("email:A@b.c").unwrap().value, "a@b.c");
        assert!(c.parse_path("nocolon").unwrap_err().contains("type:value"));
        assert!(
            c.parse_path("Bad Type:1")
                .unwrap_err()
                .contains("identifier type")
        );
        assert!(
            c.parse_path("email:not-an-email")
                .unwrap_err()
                .contains("email")
        );
        assert_eq!(
            c.parse_path("crm_id:X-1").unwrap().kind,
            IdType::Custom("crm_id".into())
        );
    }
}
