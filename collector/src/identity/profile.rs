//! Profile aggregates: traits, first-touch values, computed traits, consent, devices and RFM.
//!
//! Every aggregate combines commutatively (last write wins by event key, set-once by earliest
//! key, sums, minima, maxima), so a profile is the same whatever order its events arrived in.

use super::input::{EventInput, EventKey, format_rfc3339};
use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a set of events contributes to a profile.
#[derive(Clone, Debug, Default)]
pub struct Aggregate {
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    pub event_count: u64,
    pub page_views: u64,
    pub sessions: VecMap<String, ()>,
    /// Order ID (or message ID when none) → (timestamp, revenue).
    pub orders: VecMap<String, (i64, f64)>,
    pub traits: VecMap<String, (EventKey, Value)>,
    pub first_touch: VecMap<String, (EventKey, Value)>,
    pub consent: Consent,
    pub devices: VecMap<String, (i64, i64)>,
}

/// A map kept as a sorted vector. A link holds a few sessions, orders and consent observations,
/// mostly arriving in key order; a B-tree's smallest node outweighs that.
#[derive(Clone, Debug, PartialEq)]
pub struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// Inserts or replaces; appending in key order costs no search.
    pub fn insert(&mut self, k: K, v: V) {
        // Most hold one entry: the first takes one slot, not the usual four.
        self.0.reserve_exact(usize::from(self.0.capacity() == 0));
        if self.0.last().is_none_or(|(last, _)| *last < k) {
            self.0.push((k, v));
            return;
        }
        match self.0.binary_search_by(|(x, _)| x.cmp(&k)) {
            Ok(i) => self.0[i].1 = v,
            Err(i) => self.0.insert(i, (k, v)),
        }
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, k: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
    {
        self.0.binary_search_by(|(x, _)| x.borrow().cmp(k)).is_ok()
    }

    pub fn get<Q: Ord + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
    {
        let i = self.0.binary_search_by(|(x, _)| x.borrow().cmp(k)).ok()?;
        Some(&self.0[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: std::borrow::Borrow<Q>,
    {
        let i = self.0.binary_search_by(|(x, _)| x.borrow().cmp(k)).ok()?;
        Some(&mut self.0[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Later duplicates replace earlier ones, as in a `BTreeMap`.
impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = VecMap::default();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

/// A consent state, shared through [`ConsentInterner`].
pub type ConsentState = Arc<Map<String, Value>>;

/// Consent observations by event key, each with whether it was stated (`Consent Updated`).
/// Every stated change is kept; of the states events were merely sent under, the first and
/// last observation of each: every event carries its consent, and keeping each would grow a
/// profile with every event. Both are functions of the set of events, whatever order they
/// arrive or links merge in. The latest state per category is exact; so is the history of a
/// visitor whose changes are stated, and one who returns to an earlier state without saying so
/// shows it from the last time it was seen.
pub type Consent = VecMap<EventKey, (ConsentState, bool)>;

fn same_state(a: &ConsentState, b: &ConsentState) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// Adds an observation to `c`, keeping the summary [`Consent`] describes.
fn observe_consent(c: &mut Consent, key: EventKey, state: ConsentState, stated: bool) {
    if stated {
        c.insert(key, (state, true));
        return;
    }
    let mut seen =
        c.0.iter()
            .enumerate()
            .filter(|(_, (_, (s, stated)))| !stated && same_state(s, &state))
            .map(|(i, _)| i);
    let (first, last) = (seen.next(), seen.next());
    if let (Some(lo), Some(hi)) = (first, last) {
        if key < c.0[lo].0 {
            c.0.remove(lo);
        } else if key > c.0[hi].0 {
            c.0.remove(hi);
        } else {
            return;
        }
    }
    // A stated observation of the same event stays stated.
    if !c.get(&key).is_some_and(|(_, stated)| *stated) {
        c.insert(key, (state, false));
    }
}

/// Keeps the newest (or, for set-once values, the oldest) value of `k` by event key.
fn lww(
    map: &mut VecMap<String, (EventKey, Value)>,
    k: &str,
    key: &EventKey,
    v: impl FnOnce() -> Value,
    newest: bool,
) {
    match map.get_mut(k) {
        Some(cur) if (newest && cur.0 >= *key) || (!newest && cur.0 <= *key) => {}
        Some(cur) => *cur = (key.clone(), v()),
        None => {
            map.insert(k.to_string(), (key.clone(), v()));
        }
    }
}

fn span(a: &mut (i64, i64), first: i64, last: i64) {
    a.0 = a.0.min(first);
    a.1 = a.1.max(last);
}

impl Aggregate {
    /// Adds one event; `key` is `e.key()`, computed once by the caller.
    pub fn add(&mut self, e: &EventInput<'_>, key: &EventKey, interner: &mut ConsentInterner) {
        self.first_seen = Some(self.first_seen.map_or(e.ts, |t| t.min(e.ts)));
        self.last_seen = Some(self.last_seen.map_or(e.ts, |t| t.max(e.ts)));
        self.event_count += 1;
        if e.kind == "page" {
            self.page_views += 1;
        }
        if let Some(s) = e
            .session
            .as_deref()
            .filter(|s| !self.sessions.contains_key(*s))
        {
            self.sessions.insert(s.to_string(), ());
        }
        if e.is_order() {
            let id = e.order_id.as_deref().unwrap_or(&e.message_id).to_string();
            self.orders.insert(id, (e.ts, e.revenue.unwrap_or(0.0)));
        }
        for &(k, v) in &e.traits {
            lww(&mut self.traits, k, key, || v.clone(), true);
        }
        if let Some(r) = e.referrer {
            lww(
                &mut self.first_touch,
                "initial_referrer",
                key,
                || json!(r),
                false,
            );
        }
        if let Some(c) = e.campaign {
            for (from, to) in [
                ("source", "utm_source"),
                ("name", "utm_campaign"),
                ("medium", "utm_medium"),
                ("term", "utm_term"),
                ("content", "utm_content"),
            ] {
                if let Some(v) = c.get(from).filter(|v| !v.is_null()) {
                    lww(&mut self.first_touch, to, key, || v.clone(), false);
                }
            }
        }
        if let Some(c) = &e.consent {
            observe_consent(
                &mut self.consent,
                key.clone(),
                interner.intern(c),
                e.consent_stated,
            );
        }
        if let Some(ua) = e.user_agent {
            match self.devices.get_mut(ua) {
                Some(seen) => span(seen, e.ts, e.ts),
                None => {
                    self.devices.insert(ua.to_string(), (e.ts, e.ts));
                }
            }
        }
    }

    pub fn merge(&mut self, o: &Aggregate) {
        self.first_seen = match (self.first_seen, o.first_seen) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_seen = self.last_seen.max(o.last_seen);
        self.event_count += o.event_count;
        self.page_views += o.page_views;
        for (k, ()) in o.sessions.iter() {
            self.sessions.insert(k.clone(), ());
        }
        for (k, v) in o.orders.iter() {
            self.orders.insert(k.clone(), *v);
        }
        for (k, (key, v)) in o.traits.iter() {
            lww(&mut self.traits, k, key, || v.clone(), true);
        }
        for (k, (key, v)) in o.first_touch.iter() {
            lww(&mut self.first_touch, k, key, || v.clone(), false);
        }
        for (k, (state, stated)) in o.consent.iter() {
            observe_consent(&mut self.consent, k.clone(), state.clone(), *stated);
        }
        for (ua, &(f, l)) in o.devices.iter() {
            match self.devices.get_mut(ua) {
                Some(seen) => span(seen, f, l),
                None => self.devices.insert(ua.clone(), (f, l)),
            }
        }
    }

    /// The form kept in the identity view (read back by [`Aggregate::from_json`]), serialised
    /// straight from the aggregate without building a JSON tree.
    pub fn saved(&self) -> impl Serialize + '_ {
        Saved(self)
    }

    pub fn order_stats(&self) -> Option<OrderStats> {
        let last = self.orders.values().map(|o| o.0).max()?;
        Some(OrderStats {
            last_order_at: last,
            orders: self.orders.len() as u64,
            revenue: self.orders.values().map(|o| o.1).sum(),
        })
    }

    pub fn traits_json(&self) -> Value {
        let mut keys: Vec<_> = self.traits.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        Value::Object(
            keys.into_iter()
                .map(|(k, (_, v))| (k.clone(), v.clone()))
                .collect(),
        )
    }

    pub fn first_touch_json(&self) -> Value {
        let mut keys: Vec<_> = self.first_touch.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        Value::Object(
            keys.into_iter()
                .map(|(k, (_, v))| (k.clone(), v.clone()))
                .collect(),
        )
    }

    pub fn computed_json(&self, rfm: Option<Rfm>) -> Value {
        let stats = self.order_stats();
        let revenue = stats.map_or(0.0, |s| s.revenue);
        let orders = stats.map_or(0, |s| s.orders);
        json!({
            "first_seen": self.first_seen.map(format_rfc3339),
            "last_seen": self.last_seen.map(format_rfc3339),
            "event_count": self.event_count,
            "page_views": self.page_views,
            "sessions": self.sessions.len(),
            "orders": orders,
            "total_revenue": round2(revenue),
            "average_order_value": if orders > 0 { json!(round2(revenue / orders as f64)) } else { Value::Null },
            "last_order_at": stats.map(|s| format_rfc3339(s.last_order_at)),
            "rfm": rfm.map(|r| json!({
                "recency": r.recency, "frequency": r.frequency, "monetary": r.monetary,
                "segment": r.segment(),
            })),
        })
    }

    /// Latest state per category, and the history of changes (repeats of the same state folded).
    pub fn consent_json(&self) -> Value {
        let mut categories: BTreeMap<&String, &Value> = BTreeMap::new();
        let mut history = Vec::new();
        let mut prev: Option<&Arc<Map<String, Value>>> = None;
        let mut updated = None;
        for ((ts, mid), (c, _)) in self.consent.iter() {
            for (k, v) in c.iter() {
                categories.insert(k, v);
            }
            if prev.is_none_or(|p| p != c) {
                history
                    .push(json!({"at": format_rfc3339(*ts), "message_id": mid, "categories": **c}));
                updated = Some(*ts);
            }
            prev = Some(c);
        }
        json!({
            "categories": categories,
            "updated_at": updated.map(format_rfc3339),
            "history": history,
        })
    }

    pub fn devices_json(&self) -> Value {
        let mut d: Vec<_> = self.devices.iter().collect();
        d.sort_by(|a, b| (a.1.0, a.0).cmp(&(b.1.0, b.0)));
        Value::Array(
            d.into_iter()
                .map(|(ua, (f, l))| {
                    json!({"user_agent": ua, "first_seen": format_rfc3339(*f), "last_seen": format_rfc3339(*l)})
                })
                .collect(),
        )
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// [`Aggregate::saved`] read back.
#[derive(Debug, Deserialize)]
pub struct SavedAggregate {
    f: Option<i64>,
    l: Option<i64>,
    #[serde(default)]
    n: u64,
    #[serde(default)]
    pv: u64,
    #[serde(default)]
    s: Vec<String>,
    #[serde(default)]
    o: BTreeMap<String, (i64, f64)>,
    #[serde(default)]
    t: HashMap<String, (i64, String, Value)>,
    #[serde(default)]
    ft: HashMap<String, (i64, String, Value)>,
    #[serde(default)]
    c: Vec<(i64, String, Map<String, Value>)>,
    /// Stated changes (`Consent Updated`); before these were told apart, all were in `c`.
    #[serde(default)]
    cs: Vec<(i64, String, Map<String, Value>)>,
    #[serde(default)]
    d: HashMap<String, (i64, i64)>,
}

impl SavedAggregate {
    pub fn into_aggregate(self, interner: &mut ConsentInterner) -> Aggregate {
        let keyed = |m: HashMap<String, (i64, String, Value)>| {
            m.into_iter()
                .map(|(k, (t, id, v))| (k, ((t, id), v)))
                .collect()
        };
        Aggregate {
            first_seen: self.f,
            last_seen: self.l,
            event_count: self.n,
            page_views: self.pv,
            sessions: self.s.into_iter().map(|s| (s, ())).collect(),
            orders: self.o.into_iter().collect(),
            traits: keyed(self.t),
            first_touch: keyed(self.ft),
            consent: {
                let mut c = Consent::default();
                let observed = self.c.into_iter().map(|o| (o, false));
                for ((t, id, state), stated) in
                    observed.chain(self.cs.into_iter().map(|o| (o, true)))
                {
                    observe_consent(&mut c, (t, id), interner.intern(&state), stated);
                }
                c
            },
            devices: self.d.into_iter().collect(),
        }
    }
}

/// [`Aggregate::saved`]: `{"f", "l", "n", "pv", "s", "o", "t", "ft", "c", "cs", "d"}`.
struct Saved<'a>(&'a Aggregate);

/// A map or sequence written from an iterator, once.
struct Collect<I>(std::cell::Cell<Option<I>>);

impl<I, K, V> Serialize for Collect<I>
where
    I: Iterator<Item = (K, V)>,
    K: Serialize,
    V: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.take().into_iter().flatten())
    }
}

fn collect<I>(i: I) -> Collect<I> {
    Collect(std::cell::Cell::new(Some(i)))
}

/// The consent observations kept (see [`Consent`]), not only this link's changes: another link
/// of the same profile may interleave a different state. Stated ones, or the others.
struct Observations<'a>(&'a Consent, bool);

/// A set's members as a JSON array.
struct Keys<'a, K>(&'a VecMap<K, ()>);

impl<K: Ord + Serialize> Serialize for Keys<'_, K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(k, ())| k))
    }
}

impl Serialize for Observations<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            self.0
                .iter()
                .filter(|(_, (_, stated))| *stated == self.1)
                .map(|((t, id), (c, _))| (t, id, &**c)),
        )
    }
}

impl<'a> Serialize for Saved<'a> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.0;
        let keyed = |m: &'a VecMap<String, (EventKey, Value)>| {
            collect(m.iter().map(|(k, ((t, id), v))| (k, (t, id, v))))
        };
        let mut m = s.serialize_map(Some(10))?;
        m.serialize_entry("f", &a.first_seen)?;
        m.serialize_entry("l", &a.last_seen)?;
        m.serialize_entry("n", &a.event_count)?;
        m.serialize_entry("pv", &a.page_views)?;
        m.serialize_entry("s", &Keys(&a.sessions))?;
        m.serialize_entry("o", &collect(a.orders.iter()))?;
        m.serialize_entry("t", &keyed(&a.traits))?;
        m.serialize_entry("ft", &keyed(&a.first_touch))?;
        m.serialize_entry("c", &Observations(&a.consent, false))?;
        m.serialize_entry("cs", &Observations(&a.consent, true))?;
        m.serialize_entry("d", &collect(a.devices.iter()))?;
        m.end()
    }
}

/// Consent states repeat on almost every event and there are few of them; keep one copy of each.
#[derive(Default, Debug)]
pub struct ConsentInterner(Vec<Arc<Map<String, Value>>>);

impl ConsentInterner {
    const MAX: usize = 256;

    pub fn intern(&mut self, m: &Map<String, Value>) -> Arc<Map<String, Value>> {
        if let Some(found) = self.0.iter().find(|c| ***c == *m) {
            return Arc::clone(found);
        }
        let new = Arc::new(m.clone());
        if self.0.len() < Self::MAX {
            self.0.push(Arc::clone(&new));
        }
        new
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrderStats {
    pub last_order_at: i64,
    pub orders: u64,
    pub revenue: f64,
}

/// Recency, frequency and monetary scores, 1–5 by quintile across profiles with orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfm {
    pub recency: u8,
    pub frequency: u8,
    pub monetary: u8,
}

impl Rfm {
    /// The usual RFM segment names, chosen by recency and the mean of frequency and monetary.
    pub fn segment(&self) -> &'static str {
        let r = self.recency;
        let fm = (self.frequency + self.monetary).div_ceil(2);
        match (r, fm) {
            (4..=5, 4..=5) => "champions",
            (3..=5, 3..=5) => "loyal",
            (4..=5, 1) => "new_customers",
            (3..=5, _) => "potential_loyalists",
            (1..=2, 4..=5) => "cannot_lose_them",
            (1..=2, 3) => "at_risk",
            (2, _) => "hibernating",
            _ => "lost",
        }
    }
}

/// Sorted order statistics of every profile with orders; scores are ranks within them.
#[derive(Default, Debug, Clone)]
pub struct RfmTable {
    last_order: Vec<i64>,
    orders: Vec<u64>,
    revenue: Vec<f64>,
}

/// The quintile of `v`'s mid-rank among `sorted`: tied values share the middle of their run,
/// so a lone customer, or a crowd with the same figure, scores 3 rather than the bottom.
fn quintile<T: PartialOrd>(sorted: &[T], v: &T) -> u8 {
    if sorted.is_empty() {
        return 3;
    }
    let below = sorted.partition_point(|x| x < v);
    let not_above = sorted.partition_point(|x| x <= v);
    let doubled_rank = below + not_above; // twice the mid-rank
    let n2 = 2 * sorted.len();
    (5 * doubled_rank).div_ceil(n2).clamp(1, 5) as u8
}

impl RfmTable {
    pub fn build(stats: impl Iterator<Item = OrderStats>) -> RfmTable {
        let mut t = RfmTable::default();
        for s in stats {
            t.last_order.push(s.last_order_at);
            t.orders.push(s.orders);
            t.revenue.push(s.revenue);
        }
        t.last_order.sort_unstable();
        t.orders.sort_unstable();
        t.revenue.sort_unstable_by(f64::total_cmp);
        t
    }

    pub fn score(&self, s: &OrderStats) -> Rfm {
        Rfm {
            recency: quintile(&self.last_order, &s.last_order_at),
            frequency: quintile(&self.orders, &s.orders),
            monetary: quintile(&self.revenue, &s.revenue),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(last: i64, orders: u64, revenue: f64) -> OrderStats {
        OrderStats {
            last_order_at: last,
            orders,
            revenue,
        }
    }

    fn state(analytics: bool) -> ConsentState {
        let Value::Object(m) = json!({"analytics": analytics}) else {
            unreachable!()
        };
        Arc::new(m)
    }

    /// Observations `(second, analytics, stated)` of one link, in the given order: the consent
    /// JSON's changes as `[message_id, analytics]`, its current state, and how many it kept.
    fn consent(observations: &[(i64, bool, bool)]) -> (Value, Value, usize) {
        let mut a = Aggregate::default();
        for &(t, granted, stated) in observations {
            let key = (t * 1000, format!("m{t:03}"));
            observe_consent(&mut a.consent, key, state(granted), stated);
        }
        let json = a.consent_json();
        let changes = json["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| json!([h["message_id"], h["categories"]["analytics"]]))
            .collect();
        (changes, json["categories"].clone(), a.consent.len())
    }

    /// A visitor grants for 100 events, denies for 50, grants again for 10; with the changes
    /// stated or not.
    fn visitor(stated: bool) -> Vec<(i64, bool, bool)> {
        (1..=160)
            .map(|t| {
                let granted = !(101..=150).contains(&t);
                (t, granted, stated && (t == 101 || t == 151))
            })
            .collect()
    }

    #[test]
    fn consent_keeps_stated_changes_and_the_ends_of_each_state_in_any_order() {
        let (changes, now, kept) = consent(&visitor(true));
        assert_eq!(
            changes,
            json!([["m001", true], ["m101", false], ["m151", true]])
        );
        assert_eq!(now, json!({"analytics": true}));
        assert!(kept <= 6, "{kept} observations kept of 160");
        // Unstated, the return to granting shows from the last time it was seen.
        let (changes, now, kept) = consent(&visitor(false));
        assert_eq!(
            changes,
            json!([["m001", true], ["m101", false], ["m160", true]])
        );
        assert_eq!(now, json!({"analytics": true}));
        assert_eq!(kept, 4);
        // Late and shuffled arrivals give the same summary.
        for stated in [true, false] {
            let mut shuffled = visitor(stated);
            shuffled.sort_by_key(|&(t, ..)| (t * 7919) % 163);
            assert_eq!(consent(&shuffled), consent(&visitor(stated)));
        }
    }

    #[test]
    fn consent_seen_on_another_device_inside_a_run_still_shows_and_the_latest_wins() {
        // The laptop grants at every even second to 20; the phone denied at 15.
        let mut obs: Vec<(i64, bool, bool)> = (1..=10).map(|t| (2 * t, true, false)).collect();
        obs.push((15, false, false));
        let (changes, now, _) = consent(&obs);
        assert_eq!(
            changes,
            json!([["m002", true], ["m015", false], ["m020", true]])
        );
        assert_eq!(now, json!({"analytics": true}));
        let (_, now, _) = consent(&[(1, true, false), (2, true, false), (3, false, false)]);
        assert_eq!(now, json!({"analytics": false}));
    }

    #[test]
    fn rfm_scores_are_quintiles_across_customers() {
        let all: Vec<_> = (0..10)
            .map(|i| stats(i, i as u64 + 1, 10.0 * i as f64))
            .collect();
        let t = RfmTable::build(all.iter().copied());
        let best = t.score(&all[9]);
        assert_eq!((best.recency, best.frequency, best.monetary), (5, 5, 5));
        assert_eq!(best.segment(), "champions");
        let worst = t.score(&all[0]);
        assert_eq!((worst.recency, worst.frequency, worst.monetary), (1, 1, 1));
        assert_eq!(worst.segment(), "lost");
        assert_eq!(t.score(&all[4]).recency, 3);
    }

    #[test]
    fn a_lone_customer_or_a_tie_scores_in_the_middle_not_as_lost() {
        let one = stats(100, 1, 18.0);
        let t = RfmTable::build([one].into_iter());
        let r = t.score(&one);
        assert_eq!((r.recency, r.frequency, r.monetary), (3, 3, 3));
        assert_ne!(r.segment(), "lost");
        let same: Vec<_> = (0..6).map(|_| stats(100, 2, 40.0)).collect();
        let t = RfmTable::build(same.iter().copied());
        assert_eq!(t.score(&same[0]).frequency, 3);
    }

    #[test]
    fn lapsed_big_spender_is_at_risk_or_cannot_lose() {
        let r = Rfm {
            recency: 1,
            frequency: 5,
            monetary: 5,
        };
        assert_eq!(r.segment(), "cannot_lose_them");
        let r = Rfm {
            recency: 2,
            frequency: 3,
            monetary: 3,
        };
        assert_eq!(r.segment(), "at_risk");
    }
}
