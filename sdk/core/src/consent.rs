//! Consent categories, opt-in/opt-out modes and Global Privacy Control.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

/// How tracking starts before the visitor has chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing is stored or sent until `analytics` is granted.
    OptIn,
    /// Tracking runs until `analytics` is denied.
    OptOut,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "opt-in" => Some(Mode::OptIn),
            "opt-out" => Some(Mode::OptOut),
            _ => None,
        }
    }
}

/// The category whose grant allows tracking.
pub const ANALYTICS: &str = "analytics";
/// The category Global Privacy Control always denies.
pub const MARKETING: &str = "marketing";
/// The default categories.
pub const DEFAULT_CATEGORIES: [&str; 4] = ["necessary", ANALYTICS, MARKETING, "personalization"];

/// The visitor's choices, per category, in the configured category order.
#[derive(Clone, Debug, PartialEq)]
pub struct Consent {
    pub mode: Mode,
    /// `(category, granted)`; `None` while the visitor has not chosen.
    pub categories: Vec<(String, Option<bool>)>,
    gpc: bool,
}

impl Consent {
    pub fn new(mode: Mode, categories: Vec<String>, gpc: bool) -> Self {
        let mut c = Consent {
            mode,
            categories: categories.into_iter().map(|c| (c, None)).collect(),
            gpc,
        };
        c.apply_gpc();
        c
    }

    fn apply_gpc(&mut self) {
        if self.gpc {
            for (name, granted) in &mut self.categories {
                if name == MARKETING {
                    *granted = Some(false);
                }
            }
        }
    }

    /// Whether the category is granted; undecided categories follow the mode
    /// (`necessary` is always granted).
    pub fn granted(&self, category: &str) -> bool {
        if category == "necessary" {
            return true;
        }
        match self.categories.iter().find(|(n, _)| n == category) {
            Some((_, Some(g))) => *g,
            _ => self.mode == Mode::OptOut && !(self.gpc && category == MARKETING),
        }
    }

    /// Whether the visitor has answered for `analytics` (granted or denied).
    pub fn analytics_decided(&self) -> bool {
        self.categories
            .iter()
            .any(|(n, g)| n == ANALYTICS && g.is_some())
    }

    /// Records choices; unknown categories are returned so the caller can warn about them.
    pub fn set(&mut self, choices: &[(String, bool)]) -> Vec<String> {
        let mut unknown = Vec::new();
        for (name, granted) in choices {
            match self.categories.iter_mut().find(|(n, _)| n == name) {
                Some((_, g)) => *g = Some(*granted),
                None => unknown.push(name.clone()),
            }
        }
        self.apply_gpc();
        unknown
    }

    /// `categoryPreferences` as `(category, granted)` for every category.
    pub fn preferences(&self) -> Vec<(&str, bool)> {
        self.categories
            .iter()
            .map(|(n, _)| (n.as_str(), self.granted(n)))
            .collect()
    }

    /// Serialized for storage: `name=1,name=0` (undecided categories left out).
    pub fn encode(&self) -> String {
        let mut s = String::new();
        for (name, granted) in &self.categories {
            if let Some(g) = granted {
                if !s.is_empty() {
                    s.push(',');
                }
                s.push_str(name);
                s.push_str(if *g { "=1" } else { "=0" });
            }
        }
        s
    }

    /// Restores choices written by `encode`.
    pub fn decode(&mut self, stored: &str) {
        let choices: Vec<(String, bool)> = stored
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v == "1"))
            .collect();
        self.set(&choices);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    fn cats() -> Vec<String> {
        DEFAULT_CATEGORIES.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn opt_in_tracks_nothing_until_analytics_is_granted() {
        let mut c = Consent::new(Mode::OptIn, cats(), false);
        assert!(!c.granted(ANALYTICS));
        assert!(c.granted("necessary"));
        c.set(&[("analytics".into(), true)]);
        assert!(c.granted(ANALYTICS));
        assert!(!c.granted(MARKETING));
    }

    #[test]
    fn opt_out_tracks_until_analytics_is_denied() {
        let mut c = Consent::new(Mode::OptOut, cats(), false);
        assert!(c.granted(ANALYTICS) && c.granted(MARKETING));
        c.set(&[("analytics".into(), false)]);
        assert!(!c.granted(ANALYTICS));
    }

    #[test]
    fn global_privacy_control_denies_marketing_whatever_the_visitor_chose() {
        let mut c = Consent::new(Mode::OptOut, cats(), true);
        assert!(!c.granted(MARKETING));
        c.set(&[("marketing".into(), true), ("analytics".into(), true)]);
        assert!(!c.granted(MARKETING));
        assert!(c.granted(ANALYTICS));
    }

    #[test]
    fn unknown_categories_are_reported_and_ignored() {
        let mut c = Consent::new(Mode::OptIn, cats(), false);
        assert_eq!(c.set(&[("ads".into(), true)]), vec!["ads".to_string()]);
        assert_eq!(c.preferences().len(), 4);
    }

    #[test]
    fn choices_survive_encoding() {
        let mut c = Consent::new(Mode::OptIn, cats(), false);
        c.set(&[("analytics".into(), true), ("marketing".into(), false)]);
        let mut d = Consent::new(Mode::OptIn, cats(), false);
        d.decode(&c.encode());
        assert_eq!(c, d);
    }
}
