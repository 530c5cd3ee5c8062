//! The identity graph: which identifiers are one person, merges, limit drops and their log.
//!
//! Identity state is a deterministic function of the set of events. Events with the same set of
//! identifiers form one *link* (kept once, at its earliest event key, with an aggregate of all
//! its events). Identifiers that ever appeared together form a *component*; resolution in one
//! component never looks outside it. Links are resolved in (timestamp, messageId) order: a link
//! that arrives in order is applied incrementally, one that arrives late makes its component
//! replay its links in order. Components are one person or a few, so replays are cheap.

use super::ident::{IdType, Identifier, IdentifierJson, IdentityConfig};
use super::input::{EventInput, EventKey, Rule, format_rfc3339};
use super::profile::{Aggregate, ConsentInterner, Rfm, RfmTable, SavedAggregate};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

type NodeId = u32;
type LinkId = u32;
type CompId = u32;
type ProfId = u64;

#[derive(Debug)]
struct Node {
    id: Identifier,
    priority: u32,
    comp: CompId,
    profile: Option<ProfId>,
    first_seen: i64,
    last_seen: i64,
    added_by: Option<(String, Rule)>,
    live: bool,
}

#[derive(Debug)]
struct Link {
    /// Sorted by (priority, identifier): the lowest-priority identifier is last.
    nodes: Vec<NodeId>,
    stable: i64,
    /// Names the profile the link starts; the first `stable`, kept when an erasure takes an
    /// identifier out of the link, so the other person's profile keeps its ID.
    seed: i64,
    key: EventKey,
    rule: Rule,
    agg: Aggregate,
    profile: Option<ProfId>,
    comp: CompId,
    live: bool,
    /// Some event of this link is filed in the store under the link's first identifier, which
    /// is never dropped, so the profile's store lookup finds it.
    plain: bool,
    /// Events filed under another identifier (one a limit may drop, or none): `(seq, node the
    /// store files it under, or NO_NODE)`. The profile's store lookup may miss these.
    strays: Vec<(u64, NodeId)>,
}

impl Link {
    /// Records where the store files one more event of this link.
    fn note(&mut self, stray: Option<(u64, NodeId)>) {
        match stray {
            Some(s) if s.0 > 0 => self.strays.push(s),
            Some(_) => {}
            None => self.plain = true,
        }
    }
}

/// No identifier: the event's store key is not an identifier.
const NO_NODE: NodeId = NodeId::MAX;

#[derive(Debug, Default)]
struct Comp {
    nodes: Vec<NodeId>,
    links: Vec<LinkId>,
    max_key: Option<EventKey>,
    merges: Vec<MergeRec>,
    drops: Vec<DropRec>,
}

#[derive(Debug)]
struct Prof {
    ext: String,
    created: EventKey,
    nodes: Vec<NodeId>,
    links: Vec<LinkId>,
    /// Profiles merged into this one, transitively.
    absorbed: Vec<ProfId>,
    counts: HashMap<IdType, usize>,
    last_seen: i64,
}

#[derive(Debug, Clone)]
struct MergeRec {
    at: i64,
    message_id: String,
    rule: Rule,
    survivor: ProfId,
    survivor_ext: String,
    merged_ext: String,
    identifiers: Vec<NodeId>,
}

#[derive(Debug, Clone)]
struct DropRec {
    at: i64,
    message_id: String,
    link: LinkId,
    node: NodeId,
    reason: String,
}

/// `Merge` in docs/api.md.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Merge {
    pub at: String,
    pub message_id: String,
    pub rule: &'static str,
    pub survivor: String,
    pub merged: String,
    pub identifiers: Vec<IdentifierJson>,
}

/// `Dropped` in docs/api.md.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Dropped {
    pub at: String,
    pub message_id: String,
    pub identifier: IdentifierJson,
    pub rule: &'static str,
    pub reason: String,
}

/// What an erasure removed from the graph.
#[derive(Debug, Clone)]
pub struct Erased {
    pub profile_id: String,
    pub identifiers: Vec<Identifier>,
    /// Stable link IDs gone from the graph (erased, or rewritten under a new ID).
    pub links: Vec<i64>,
    /// Events of the erased person that a store lookup by their identifiers does not reach.
    pub unreachable: Vec<u64>,
}

/// Which events of a profile the store lookup by its user and anonymous IDs does not find.
#[derive(Debug, Clone, Default)]
pub struct TimelinePlan {
    /// Stable IDs of the profile's links: a stored event is the profile's when its
    /// identifiers (less suppressed ones) hash to one of these.
    pub links: HashSet<i64>,
    pub user_ids: Vec<String>,
    pub anonymous_ids: Vec<String>,
    /// Seqs of the profile's events filed under someone else's identifier or none, newest first.
    pub extra: Vec<u64>,
}

/// A profile page entry for search and listing.
#[derive(Debug, Clone)]
pub struct ProfileRef {
    pub identifier: Identifier,
    pub sort: String,
}

/// A link as saved in the identity view, read back by [`Engine::restore`].
#[derive(Serialize)]
struct SavedLink<'a, A: Serialize> {
    ids: Vec<(&'a str, &'a str)>,
    key: (i64, &'a str),
    rule: &'static str,
    agg: A,
    /// [`Link::plain`].
    p: bool,
    /// [`Link::strays`], each node as its index in `ids` (-1: none).
    st: Vec<(u64, i64)>,
    /// [`Link::seed`] when it is not the link's own ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    o: Option<i64>,
}

/// [`SavedLink`] read back.
#[derive(Deserialize)]
struct LoadedLink {
    ids: Vec<(String, String)>,
    key: EventKey,
    rule: String,
    agg: SavedAggregate,
    #[serde(default = "saved_before_strays")]
    p: bool,
    #[serde(default)]
    st: Vec<(u64, i64)>,
    #[serde(default)]
    o: Option<i64>,
}

/// Links saved before strays were tracked: their events count as found by the store lookup.
fn saved_before_strays() -> bool {
    true
}

/// Stable 64-bit FNV-1a, so link and profile IDs survive restarts and replays.
pub fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Stable ID of a set of identifiers: [`fnv`] of their `type:value` forms, without making them.
pub fn link_stable(ids: &[Identifier]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for id in ids {
        let bytes = id.kind.as_str().bytes().chain([b':']);
        for b in bytes.chain(id.value.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h as i64
}

#[derive(Default)]
struct RfmCache {
    table: RfmTable,
    built_at: Option<Instant>,
    built_gen: u64,
}

/// The identity graph and profiles, in memory.
pub struct Engine {
    config: IdentityConfig,
    node_index: HashMap<Identifier, NodeId>,
    nodes: Vec<Node>,
    link_index: HashMap<Vec<NodeId>, LinkId>,
    links: Vec<Link>,
    comps: Vec<Comp>,
    profiles: HashMap<ProfId, Prof>,
    next_prof: ProfId,
    /// Values of live identifiers, for prefix search.
    search: BTreeSet<(String, NodeId)>,
    interner: ConsentInterner,
    /// Links whose saved form is out of date.
    dirty: HashSet<LinkId>,
    order_gen: u64,
    rfm: Mutex<RfmCache>,
    /// How stale RFM quintiles may get before a read rebuilds them.
    pub rfm_refresh: Duration,
}

impl Engine {
    pub fn new(config: IdentityConfig) -> Engine {
        Engine {
            config,
            node_index: HashMap::new(),
            nodes: Vec::new(),
            link_index: HashMap::new(),
            links: Vec::new(),
            comps: Vec::new(),
            profiles: HashMap::new(),
            next_prof: 1,
            search: BTreeSet::new(),
            interner: ConsentInterner::default(),
            dirty: HashSet::new(),
            order_gen: 0,
            rfm: Mutex::new(RfmCache::default()),
            rfm_refresh: Duration::from_secs(1),
        }
    }

    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    pub fn profile_count(&self) -> usize {
        self.profiles.len()
    }

    fn intern(&mut self, id: &Identifier) -> NodeId {
        if let Some(n) = self.node_index.get(id) {
            return *n;
        }
        let n = self.nodes.len() as NodeId;
        let comp = self.comps.len() as CompId;
        self.comps.push(Comp {
            nodes: vec![n],
            ..Comp::default()
        });
        self.nodes.push(Node {
            id: id.clone(),
            priority: self.config.priority(&id.kind),
            comp,
            profile: None,
            first_seen: i64::MAX,
            last_seen: i64::MIN,
            added_by: None,
            live: true,
        });
        self.node_index.insert(id.clone(), n);
        self.search.insert((id.value.clone(), n));
        n
    }

    /// Joins components; the bigger one absorbs the smaller.
    fn union(&mut self, a: CompId, b: CompId) -> CompId {
        if a == b {
            return a;
        }
        let (big, small) = if self.comps[a as usize].nodes.len()
            + self.comps[a as usize].links.len()
            >= self.comps[b as usize].nodes.len() + self.comps[b as usize].links.len()
        {
            (a, b)
        } else {
            (b, a)
        };
        let s = std::mem::take(&mut self.comps[small as usize]);
        for &n in &s.nodes {
            self.nodes[n as usize].comp = big;
        }
        for &l in &s.links {
            self.links[l as usize].comp = big;
        }
        let c = &mut self.comps[big as usize];
        c.nodes.extend(s.nodes);
        c.links.extend(s.links);
        c.merges.extend(s.merges);
        c.drops.extend(s.drops);
        c.max_key = c.max_key.take().max(s.max_key);
        big
    }

    /// Applies one event; returns the stable ID of its link, or `None` if it has no identifiers.
    pub fn apply(&mut self, e: &EventInput<'_>) -> Option<i64> {
        if e.ids.is_empty() {
            return None;
        }
        let (nodes, store_key) = self.node_set(&e.ids, e.store_key, e.ts, e.ts);
        let stray = (store_key != Some(nodes[0])).then_some((e.seq, store_key.unwrap_or(NO_NODE)));
        let key = e.key();
        if e.is_order() {
            self.order_gen += 1;
        }
        if let Some(&l) = self.link_index.get(&nodes) {
            self.dirty.insert(l);
            let link = &mut self.links[l as usize];
            link.agg.add(e, &key, &mut self.interner);
            link.note(stray);
            let stable = link.stable;
            if key < link.key {
                link.key = key;
                link.rule = e.rule;
                let comp = link.comp;
                self.replay(comp);
            } else if let Some(p) = link.profile {
                let p = self.profiles.get_mut(&p).expect("link profile exists");
                p.last_seen = p.last_seen.max(e.ts);
            }
            return Some(stable);
        }
        let mut agg = Aggregate::default();
        agg.add(e, &key, &mut self.interner);
        let (l, in_order) = self.add_link(nodes, link_stable(&e.ids), key.clone(), e.rule, agg);
        self.links[l as usize].note(stray);
        self.dirty.insert(l);
        let comp = self.links[l as usize].comp;
        if in_order {
            self.comps[comp as usize].max_key = Some(key);
            self.resolve(l);
        } else {
            self.replay(comp);
        }
        Some(self.links[l as usize].stable)
    }

    /// Interns identifiers seen between `first` and `last`; sorted lowest priority last. Also
    /// the node of `ids[key]`.
    fn node_set(
        &mut self,
        ids: &[Identifier],
        key: Option<usize>,
        first: i64,
        last: i64,
    ) -> (Vec<NodeId>, Option<NodeId>) {
        let mut nodes: Vec<NodeId> = ids.iter().map(|id| self.intern(id)).collect();
        let key = key.and_then(|k| nodes.get(k).copied());
        for &n in &nodes {
            let node = &mut self.nodes[n as usize];
            node.first_seen = node.first_seen.min(first);
            node.last_seen = node.last_seen.max(last);
        }
        nodes.sort_by(|a, b| {
            let (na, nb) = (&self.nodes[*a as usize], &self.nodes[*b as usize]);
            (na.priority, &na.id).cmp(&(nb.priority, &nb.id))
        });
        (nodes, key)
    }

    /// Adds an unresolved link, joining the components of its identifiers. Also says whether it
    /// comes after everything already in those components.
    fn add_link(
        &mut self,
        nodes: Vec<NodeId>,
        stable: i64,
        key: EventKey,
        rule: Rule,
        agg: Aggregate,
    ) -> (LinkId, bool) {
        let mut comp = self.nodes[nodes[0] as usize].comp;
        let mut in_order = true;
        for &n in &nodes {
            let c = self.nodes[n as usize].comp;
            if self.comps[c as usize]
                .max_key
                .as_ref()
                .is_some_and(|m| *m > key)
            {
                in_order = false;
            }
            comp = self.union(comp, c);
        }
        let l = self.links.len() as LinkId;
        self.links.push(Link {
            nodes: nodes.clone(),
            stable,
            seed: stable,
            key,
            rule,
            agg,
            profile: None,
            comp,
            live: true,
            plain: false,
            strays: Vec::new(),
        });
        self.link_index.insert(nodes, l);
        self.comps[comp as usize].links.push(l);
        (l, in_order)
    }

    /// Restores a link saved by [`Engine::take_dirty`]; call [`Engine::finish_restore`] after the
    /// last one.
    pub fn restore(&mut self, saved: &str) -> Option<()> {
        let saved: LoadedLink = serde_json::from_str(saved).ok()?;
        let ids: Vec<Identifier> = saved
            .ids
            .into_iter()
            .map(|(kind, value)| {
                let kind = IdType::parse(&kind).ok()?;
                Some(Identifier { kind, value })
            })
            .collect::<Option<_>>()?;
        let rule = Rule::parse(&saved.rule)?;
        let agg = saved.agg.into_aggregate(&mut self.interner);
        if ids.is_empty() || agg.event_count == 0 {
            return None;
        }
        let (nodes, _) = self.node_set(&ids, None, agg.first_seen?, agg.last_seen?);
        if self.link_index.contains_key(&nodes) {
            return None;
        }
        let strays = saved
            .st
            .iter()
            .map(|&(seq, at)| {
                let node = usize::try_from(at)
                    .ok()
                    .and_then(|i| ids.get(i))
                    .map_or(NO_NODE, |id| self.node_index[id]);
                (seq, node)
            })
            .collect();
        // Saved in priority order; the link's ID hashes them in identifier order, as events do.
        let mut sorted = ids;
        sorted.sort();
        let (l, _) = self.add_link(nodes, link_stable(&sorted), saved.key, rule, agg);
        let link = &mut self.links[l as usize];
        if let Some(seed) = saved.o {
            link.seed = seed;
        }
        link.plain = saved.p;
        link.strays = strays;
        Some(())
    }

    /// Resolves every restored component.
    pub fn finish_restore(&mut self) {
        for c in 0..self.comps.len() {
            if !self.comps[c].links.is_empty() {
                self.replay(c as CompId);
            }
        }
        self.dirty.clear();
    }

    /// Links changed since the last call, as `(stable ID, saved form)`.
    pub fn take_dirty(&mut self) -> Vec<(i64, String)> {
        let mut out = Vec::with_capacity(self.dirty.len());
        for l in self.dirty.drain() {
            let link = &self.links[l as usize];
            if !link.live {
                continue;
            }
            let ids: Vec<(&str, &str)> = link
                .nodes
                .iter()
                .map(|n| {
                    let id = &self.nodes[*n as usize].id;
                    (id.kind.as_str(), id.value.as_str())
                })
                .collect();
            let strays: Vec<(u64, i64)> = link
                .strays
                .iter()
                .map(|(seq, n)| {
                    let at = link.nodes.iter().position(|m| m == n);
                    (*seq, at.map_or(-1, |i| i as i64))
                })
                .collect();
            let saved = SavedLink {
                ids,
                key: (link.key.0, &link.key.1),
                rule: link.rule.as_str(),
                agg: link.agg.saved(),
                p: link.plain,
                st: strays,
                o: (link.seed != link.stable).then_some(link.seed),
            };
            let saved = serde_json::to_string(&saved).expect("a link serialises");
            out.push((link.stable, saved));
        }
        out
    }

    pub fn dirty_count(&self) -> usize {
        self.dirty.len()
    }

    /// Re-resolves every link of a component in event-key order from scratch.
    fn replay(&mut self, comp: CompId) {
        self.order_gen += 1;
        let c = &mut self.comps[comp as usize];
        c.merges.clear();
        c.drops.clear();
        let mut links = std::mem::take(&mut c.links);
        links.retain(|l| self.links[*l as usize].live);
        links.sort_by(|a, b| {
            self.links[*a as usize]
                .key
                .cmp(&self.links[*b as usize].key)
        });
        let nodes = c.nodes.clone();
        for n in nodes {
            let node = &mut self.nodes[n as usize];
            if let Some(p) = node.profile.take() {
                self.profiles.remove(&p);
            }
            node.added_by = None;
        }
        for &l in &links {
            self.links[l as usize].profile = None;
        }
        let c = &mut self.comps[comp as usize];
        c.max_key = links.last().map(|l| self.links[*l as usize].key.clone());
        c.links = links.clone();
        for l in links {
            self.resolve(l);
        }
    }

    /// The incremental rule: match, drop lowest priority on limit breach, create/add/merge.
    fn resolve(&mut self, l: LinkId) {
        let link = &self.links[l as usize];
        let (key, rule, comp) = (link.key.clone(), link.rule, link.comp);
        let mut ids = link.nodes.clone();
        let matched = loop {
            let mut matched: Vec<ProfId> = ids
                .iter()
                .filter_map(|n| self.nodes[*n as usize].profile)
                .collect();
            matched.sort_unstable();
            matched.dedup();
            match self.limit_breach(&ids, &matched) {
                None => break matched,
                Some(reason) => {
                    let node = ids.pop().expect("a single identifier never breaks a limit");
                    let drop = DropRec {
                        at: key.0,
                        message_id: key.1.clone(),
                        link: l,
                        node,
                        reason,
                    };
                    self.comps[comp as usize].drops.push(drop);
                }
            }
        };
        let survivor = if matched.is_empty() {
            let p = self.next_prof;
            self.next_prof += 1;
            let seed = self.links[l as usize].seed.to_string();
            let ext = format!("prof_{:016x}", fnv(&[&key.1, &seed]));
            self.profiles.insert(
                p,
                Prof {
                    ext,
                    created: key.clone(),
                    nodes: Vec::new(),
                    links: Vec::new(),
                    absorbed: Vec::new(),
                    counts: HashMap::new(),
                    last_seen: i64::MIN,
                },
            );
            p
        } else {
            // Oldest first: it survives, and the others are merged (and logged) in age order,
            // never in the order internal IDs happened to be handed out.
            let mut matched = matched;
            matched.sort_by(|a, b| {
                let (pa, pb) = (&self.profiles[a], &self.profiles[b]);
                (&pa.created, &pa.ext).cmp(&(&pb.created, &pb.ext))
            });
            let survivor = matched[0];
            for &m in &matched[1..] {
                let gone = self.profiles.remove(&m).expect("matched profile exists");
                for &n in &gone.nodes {
                    self.nodes[n as usize].profile = Some(survivor);
                }
                for &lk in &gone.links {
                    self.links[lk as usize].profile = Some(survivor);
                }
                let s = self.profiles.get_mut(&survivor).expect("survivor exists");
                self.comps[comp as usize].merges.push(MergeRec {
                    at: key.0,
                    message_id: key.1.clone(),
                    rule,
                    survivor,
                    survivor_ext: s.ext.clone(),
                    merged_ext: gone.ext.clone(),
                    identifiers: ids.clone(),
                });
                s.nodes.extend(gone.nodes);
                s.links.extend(gone.links);
                s.absorbed.push(m);
                s.absorbed.extend(gone.absorbed);
                for (k, v) in gone.counts {
                    *s.counts.entry(k).or_default() += v;
                }
                s.last_seen = s.last_seen.max(gone.last_seen);
            }
            survivor
        };
        let s = self.profiles.get_mut(&survivor).expect("survivor exists");
        for n in ids {
            let node = &mut self.nodes[n as usize];
            if node.profile.is_none() {
                node.profile = Some(survivor);
                node.added_by = Some((key.1.clone(), rule));
                s.nodes.push(n);
                *s.counts.entry(node.id.kind.clone()).or_default() += 1;
            }
        }
        let link = &mut self.links[l as usize];
        link.profile = Some(survivor);
        s.links.push(l);
        s.last_seen = s.last_seen.max(link.agg.last_seen.unwrap_or(i64::MIN));
    }

    /// Why joining `ids` and the `matched` profiles would break a per-type limit, if it would.
    fn limit_breach(&self, ids: &[NodeId], matched: &[ProfId]) -> Option<String> {
        let mut counts: HashMap<&IdType, usize> = HashMap::new();
        for p in matched {
            for (k, v) in &self.profiles[p].counts {
                *counts.entry(k).or_default() += v;
            }
        }
        for n in ids {
            let node = &self.nodes[*n as usize];
            if node.profile.is_none() {
                *counts.entry(&node.id.kind).or_default() += 1;
            }
        }
        let mut breaches: Vec<_> = counts
            .into_iter()
            .filter(|(k, v)| *v > self.config.limit(k))
            .collect();
        breaches.sort_by_key(|(k, _)| (self.config.priority(k), k.as_str().to_string()));
        let (kind, count) = breaches.first()?;
        let mut who: Vec<&str> = matched
            .iter()
            .map(|p| self.profiles[p].ext.as_str())
            .collect();
        who.sort_unstable();
        Some(format!(
            "joining would give one profile {count} {} identifiers (limit {}){}",
            kind.as_str(),
            self.config.limit(kind),
            if who.is_empty() {
                String::new()
            } else {
                format!("; profiles involved: {}", who.join(", "))
            }
        ))
    }

    fn node_json(&self, n: NodeId) -> IdentifierJson {
        IdentifierJson::from(&self.nodes[n as usize].id)
    }

    fn profile_of(&self, id: &Identifier) -> Option<ProfId> {
        self.nodes[*self.node_index.get(id)? as usize].profile
    }

    /// The profile's aggregate over all its links.
    fn aggregate(&self, p: &Prof) -> Aggregate {
        let mut agg = Aggregate::default();
        for l in &p.links {
            agg.merge(&self.links[*l as usize].agg);
        }
        agg
    }

    fn rfm_for(&self, agg: &Aggregate) -> Option<Rfm> {
        let stats = agg.order_stats()?;
        let mut cache = self.rfm.lock().unwrap_or_else(|e| e.into_inner());
        let stale = cache
            .built_at
            .is_none_or(|t| t.elapsed() >= self.rfm_refresh);
        if cache.built_gen != self.order_gen && stale || cache.built_at.is_none() {
            cache.table = RfmTable::build(
                self.profiles
                    .values()
                    .filter_map(|p| self.aggregate(p).order_stats()),
            );
            cache.built_at = Some(Instant::now());
            cache.built_gen = self.order_gen;
        }
        Some(cache.table.score(&stats))
    }

    /// The Profile JSON (docs/api.md) of whoever holds `id`.
    pub fn profile_json(&self, id: &Identifier) -> Option<Value> {
        let p = self.profile_of(id)?;
        Some(self.render(p))
    }

    fn render(&self, p: ProfId) -> Value {
        let prof = &self.profiles[&p];
        let agg = self.aggregate(prof);
        let mut nodes = prof.nodes.clone();
        nodes.sort_by_key(|n| {
            let node = &self.nodes[*n as usize];
            (node.priority, node.first_seen, node.id.clone())
        });
        let identities: Vec<Value> = nodes
            .iter()
            .map(|n| {
                let node = &self.nodes[*n as usize];
                json!({
                    "type": node.id.kind.as_str(),
                    "value": node.id.value,
                    "first_seen": format_rfc3339(node.first_seen),
                    "last_seen": format_rfc3339(node.last_seen),
                    "added_by": node.added_by.as_ref().map(|(m, r)| json!({"message_id": m, "rule": r.as_str()})),
                })
            })
            .collect();
        json!({
            "id": prof.ext,
            "created_at": format_rfc3339(prof.created.0),
            "updated_at": agg.last_seen.map(format_rfc3339),
            "identities": identities,
            "traits": agg.traits_json(),
            "first_touch": agg.first_touch_json(),
            "computed": agg.computed_json(self.rfm_for(&agg)),
            "consent": agg.consent_json(),
            "devices": agg.devices_json(),
        })
    }

    /// How to read the timeline of the profile holding `id` (see [`TimelinePlan`]).
    pub fn timeline_plan(&self, id: &Identifier) -> Option<TimelinePlan> {
        let p = self.profile_of(id)?;
        let prof = &self.profiles[&p];
        let mut plan = TimelinePlan::default();
        for &n in &prof.nodes {
            let id = &self.nodes[n as usize].id;
            match id.kind {
                IdType::UserId => plan.user_ids.push(id.value.clone()),
                IdType::AnonymousId => plan.anonymous_ids.push(id.value.clone()),
                _ => {}
            }
        }
        for &l in &prof.links {
            let link = &self.links[l as usize];
            plan.links.insert(link.stable);
            for &(seq, k) in &link.strays {
                if k == NO_NODE || self.nodes[k as usize].profile != Some(p) {
                    plan.extra.push(seq);
                }
            }
        }
        plan.extra.sort_unstable_by_key(|s| std::cmp::Reverse(*s));
        plan.extra.dedup();
        Some(plan)
    }

    /// External profile ID of whoever holds `id`.
    pub fn profile_id(&self, id: &Identifier) -> Option<String> {
        Some(self.profiles[&self.profile_of(id)?].ext.clone())
    }

    /// Why the profile holding `id` is one person: its merges, and identifiers left out of its
    /// events (or of others' events that tried to join it) because of a limit.
    pub fn merges(&self, id: &Identifier) -> Option<(Vec<Merge>, Vec<Dropped>)> {
        let p = self.profile_of(id)?;
        let prof = &self.profiles[&p];
        let mine: HashSet<ProfId> = prof.absorbed.iter().copied().chain([p]).collect();
        let comp = &self.comps[self.nodes[prof.nodes[0] as usize].comp as usize];
        let mut merges: Vec<Merge> = comp
            .merges
            .iter()
            .filter(|m| mine.contains(&m.survivor))
            .map(|m| Merge {
                at: format_rfc3339(m.at),
                message_id: m.message_id.clone(),
                rule: m.rule.as_str(),
                survivor: m.survivor_ext.clone(),
                merged: m.merged_ext.clone(),
                identifiers: m.identifiers.iter().map(|n| self.node_json(*n)).collect(),
            })
            .collect();
        let mut dropped: Vec<Dropped> = comp
            .drops
            .iter()
            .filter(|d| {
                self.links[d.link as usize].profile == Some(p)
                    || self.nodes[d.node as usize].profile == Some(p)
            })
            .map(|d| Dropped {
                at: format_rfc3339(d.at),
                message_id: d.message_id.clone(),
                identifier: self.node_json(d.node),
                rule: "limit",
                reason: d.reason.clone(),
            })
            .collect();
        // The component's log is in application order, which joined components interleave;
        // the answer is in event order.
        merges.sort_by(|a, b| {
            (&a.at, &a.message_id, &a.merged).cmp(&(&b.at, &b.message_id, &b.merged))
        });
        dropped.sort_by(|a, b| {
            (
                &a.at,
                &a.message_id,
                &a.identifier.kind,
                &a.identifier.value,
            )
                .cmp(&(
                    &b.at,
                    &b.message_id,
                    &b.identifier.kind,
                    &b.identifier.value,
                ))
        });
        Some((merges, dropped))
    }

    /// Profiles whose identifier values start with `q`, ordered by value, after `cursor`.
    pub fn search(
        &self,
        q: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<Value>, Option<String>) {
        let start = cursor.unwrap_or(q).to_string();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut last = None;
        for (value, n) in self.search.range((start, 0)..) {
            if !value.starts_with(q) {
                break;
            }
            if cursor.is_some_and(|c| value.as_str() <= c) {
                continue;
            }
            let Some(p) = self.nodes[*n as usize].profile else {
                continue;
            };
            if out.len() == limit {
                return (out, last);
            }
            last = Some(value.clone());
            if seen.insert(p) {
                out.push(self.render(p));
            }
        }
        (out, None)
    }

    /// The most recently active profiles; the cursor is `last_seen_ms.profile_id`.
    pub fn recent(&self, cursor: Option<&str>, limit: usize) -> (Vec<Value>, Option<String>) {
        let after: Option<(i64, String)> = cursor.and_then(|c| {
            let (t, id) = c.split_once('.')?;
            Some((t.parse().ok()?, id.to_string()))
        });
        let mut all: Vec<(i64, &String, ProfId)> = self
            .profiles
            .iter()
            .map(|(id, p)| (p.last_seen, &p.ext, *id))
            .filter(|(t, ext, _)| {
                after
                    .as_ref()
                    .is_none_or(|(at, aid)| (*t, *ext) < (*at, aid))
            })
            .collect();
        let n = limit.min(all.len());
        if n == 0 {
            return (Vec::new(), None);
        }
        all.select_nth_unstable_by(n - 1, |a, b| (b.0, b.1).cmp(&(a.0, a.1)));
        all.truncate(n);
        all.sort_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)));
        let next = (all.len() == limit).then(|| {
            let l = all.last().expect("not empty");
            format!("{}.{}", l.0, l.1)
        });
        (all.iter().map(|(_, _, p)| self.render(*p)).collect(), next)
    }

    /// Erases the profile holding `id`: its links, and the links of others' events that the
    /// store files under one of its identifiers (the store deletes those with it). Others' links
    /// that merely carry one of its identifiers (a shared browser's anonymous ID) stay with their
    /// owner, without the erased identifiers.
    pub fn erase(&mut self, id: &Identifier) -> Option<Erased> {
        let p = self.profile_of(id)?;
        let prof = &self.profiles[&p];
        let profile_id = prof.ext.clone();
        let gone: HashSet<NodeId> = prof.nodes.iter().copied().collect();
        let comp = self.nodes[prof.nodes[0] as usize].comp;
        let mut links = Vec::new();
        let mut unreachable = Vec::new();
        let mut carried = Vec::new();
        for &l in &self.comps[comp as usize].links {
            let link = &mut self.links[l as usize];
            if !link.live {
                continue;
            }
            let mine = link.profile == Some(p);
            let deleted_with_them = (link.plain && gone.contains(&link.nodes[0]))
                || link.strays.iter().any(|(_, k)| gone.contains(k));
            if mine || deleted_with_them {
                link.live = false;
                self.dirty.remove(&l);
                links.push(link.stable);
                if mine {
                    unreachable.extend(
                        link.strays
                            .iter()
                            .filter(|(_, k)| !gone.contains(k))
                            .map(|(seq, _)| *seq),
                    );
                }
                let nodes = std::mem::take(&mut link.nodes);
                self.link_index.remove(&nodes);
            } else if link.nodes.iter().any(|n| gone.contains(n)) {
                carried.push(l);
            }
        }
        for l in carried {
            links.push(self.links[l as usize].stable);
            self.strip(l, &gone);
        }
        let mut identifiers = Vec::new();
        for &n in &gone {
            let node = &mut self.nodes[n as usize];
            node.live = false;
            identifiers.push(node.id.clone());
            self.node_index.remove(&node.id);
            self.search.remove(&(node.id.value.clone(), n));
        }
        identifiers.sort();
        let c = &mut self.comps[comp as usize];
        c.nodes.retain(|n| !gone.contains(n));
        self.replay(comp);
        unreachable.sort_unstable();
        Some(Erased {
            profile_id,
            identifiers,
            links,
            unreachable,
        })
    }

    /// Takes `gone` identifiers out of link `l`: it becomes (or joins) the link of the rest, as
    /// its events read once the gone identifiers are suppressed.
    fn strip(&mut self, l: LinkId, gone: &HashSet<NodeId>) {
        let link = &mut self.links[l as usize];
        let old = std::mem::take(&mut link.nodes);
        self.link_index.remove(&old);
        let nodes: Vec<NodeId> = old.into_iter().filter(|n| !gone.contains(n)).collect();
        let mut ids: Vec<Identifier> = nodes
            .iter()
            .map(|n| self.nodes[*n as usize].id.clone())
            .collect();
        ids.sort();
        match self.link_index.get(&nodes) {
            Some(&into) => {
                let link = &mut self.links[l as usize];
                link.live = false;
                let (agg, strays, plain, key, rule, seed) = (
                    std::mem::take(&mut link.agg),
                    std::mem::take(&mut link.strays),
                    link.plain,
                    link.key.clone(),
                    link.rule,
                    link.seed,
                );
                self.dirty.remove(&l);
                let into_link = &mut self.links[into as usize];
                into_link.agg.merge(&agg);
                into_link.strays.extend(strays);
                into_link.plain |= plain;
                if key < into_link.key {
                    into_link.key = key;
                    into_link.rule = rule;
                    into_link.seed = seed;
                }
                self.dirty.insert(into);
            }
            None => {
                let link = &mut self.links[l as usize];
                link.stable = link_stable(&ids);
                link.nodes = nodes.clone();
                self.link_index.insert(nodes, l);
                self.dirty.insert(l);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(mid: &str, ts: &str, body: Value) -> EventInput<'static> {
        let mut m = body;
        m["messageId"] = json!(mid);
        m["timestamp"] = json!(format!("2026-11-23T10:00:{ts}.000Z"));
        // Inputs borrow their message; a test's few messages live as long as the test binary.
        let m: &'static Value = Box::leak(Box::new(m));
        EventInput::from_message(m, &IdentityConfig::default())
    }

    fn uid(v: &str) -> Identifier {
        Identifier {
            kind: IdType::UserId,
            value: v.into(),
        }
    }
    fn anon(v: &str) -> Identifier {
        Identifier {
            kind: IdType::AnonymousId,
            value: v.into(),
        }
    }

    #[test]
    fn link_ids_saved_by_earlier_versions_still_match() {
        let ids = [uid("u-1"), anon("a-1")];
        assert_eq!(
            link_stable(&ids),
            fnv(&["user_id:u-1", "anonymous_id:a-1"]) as i64
        );
    }

    #[test]
    fn login_stitches_anonymous_history_to_the_user() {
        let mut g = Engine::new(IdentityConfig::default());
        g.apply(&ev("1", "01", json!({"type": "page", "anonymousId": "a"})));
        g.apply(&ev(
            "2",
            "02",
            json!({"type": "identify", "anonymousId": "a", "userId": "u"}),
        ));
        assert_eq!(g.profile_id(&anon("a")), g.profile_id(&uid("u")));
        let p = g.profile_json(&uid("u")).unwrap();
        assert_eq!(p["computed"]["event_count"], 2);
    }

    #[test]
    fn oldest_profile_survives_a_merge() {
        let mut g = Engine::new(IdentityConfig::default());
        g.apply(&ev("1", "01", json!({"type": "page", "anonymousId": "a"})));
        let old = g.profile_id(&anon("a")).unwrap();
        g.apply(&ev("2", "02", json!({"type": "page", "userId": "u"})));
        g.apply(&ev(
            "3",
            "03",
            json!({"type": "identify", "anonymousId": "a", "userId": "u"}),
        ));
        assert_eq!(g.profile_id(&uid("u")).unwrap(), old);
        let (merges, _) = g.merges(&uid("u")).unwrap();
        assert_eq!(merges.len(), 1);
        assert_eq!(merges[0].survivor, old);
        assert_eq!(merges[0].message_id, "3");
        assert_eq!(merges[0].rule, "identify");
    }

    #[test]
    fn second_user_on_a_shared_browser_is_not_merged_and_the_drop_is_logged() {
        let mut g = Engine::new(IdentityConfig::default());
        g.apply(&ev(
            "1",
            "01",
            json!({"type": "identify", "anonymousId": "a", "userId": "u1"}),
        ));
        g.apply(&ev(
            "2",
            "02",
            json!({"type": "identify", "anonymousId": "a", "userId": "u2"}),
        ));
        assert_ne!(g.profile_id(&uid("u1")), g.profile_id(&uid("u2")));
        let (_, dropped) = g.merges(&uid("u2")).unwrap();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].identifier.value, "a");
        assert_eq!(dropped[0].message_id, "2");
        assert!(
            dropped[0].reason.contains("user_id"),
            "{}",
            dropped[0].reason
        );
    }

    #[test]
    fn late_event_replays_so_the_earlier_timestamp_wins_the_limit() {
        let mut g = Engine::new(IdentityConfig::default());
        // u2 logs in at :02 but its event arrives first; u1's login at :01 arrives late.
        g.apply(&ev(
            "2",
            "02",
            json!({"type": "identify", "anonymousId": "a", "userId": "u2"}),
        ));
        g.apply(&ev(
            "1",
            "01",
            json!({"type": "identify", "anonymousId": "a", "userId": "u1"}),
        ));
        assert_eq!(g.profile_id(&anon("a")), g.profile_id(&uid("u1")));
    }

    #[test]
    fn traits_are_last_write_wins_by_timestamp_not_arrival() {
        let mut g = Engine::new(IdentityConfig::default());
        g.apply(&ev(
            "2",
            "02",
            json!({"type": "identify", "userId": "u", "traits": {"plan": "pro"}}),
        ));
        g.apply(&ev(
            "1",
            "01",
            json!({"type": "identify", "userId": "u", "traits": {"plan": "free", "name": "N"}}),
        ));
        let p = g.profile_json(&uid("u")).unwrap();
        assert_eq!(p["traits"], json!({"name": "N", "plan": "pro"}));
    }

    #[test]
    fn erasure_removes_the_profile_and_its_identifiers() {
        let mut g = Engine::new(IdentityConfig::default());
        g.apply(&ev(
            "1",
            "01",
            json!({"type": "identify", "anonymousId": "a", "userId": "u"}),
        ));
        g.apply(&ev("2", "02", json!({"type": "page", "anonymousId": "b"})));
        let erased = g.erase(&uid("u")).unwrap();
        assert_eq!(erased.identifiers, vec![uid("u"), anon("a")]);
        assert_eq!(erased.links.len(), 1);
        assert!(g.profile_json(&anon("a")).is_none());
        assert!(g.profile_json(&anon("b")).is_some());
    }

    #[test]
    fn erasing_the_first_person_on_a_shared_browser_keeps_the_second_without_its_id() {
        let mut g = Engine::new(IdentityConfig::default());
        for (mid, ts, user) in [("1", "01", "u1"), ("2", "02", "u2"), ("3", "03", "u2")] {
            let body = json!({"type": "track", "event": "E", "anonymousId": "a", "userId": user});
            g.apply(&ev(mid, ts, body));
        }
        let before = g.profile_id(&uid("u2")).unwrap();
        let erased = g.erase(&uid("u1")).unwrap();
        assert_eq!(erased.identifiers, vec![uid("u1"), anon("a")]);
        assert_eq!(
            g.profile_id(&uid("u2")).unwrap(),
            before,
            "u2 keeps its profile ID"
        );
        let p = g.profile_json(&uid("u2")).unwrap();
        assert_eq!(p["computed"]["event_count"], 2);
        assert_eq!(p["identities"].as_array().unwrap().len(), 1, "{p}");
        // Its link is saved again under the identifiers its events keep.
        let saved = g.take_dirty();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].0, link_stable(&[uid("u2")]));
    }

    mod order_independence {
        use super::*;
        use proptest::prelude::*;

        /// A small world of identifiers so that random events collide, merge and hit limits.
        fn event() -> impl Strategy<Value = Value> {
            let anon = prop::option::weighted(0.8, 0..4u8);
            let user = prop::option::of(0..3u8);
            let email = prop::option::of(0..3u8);
            let kind = prop::sample::select(vec!["identify", "track", "page", "alias"]);
            (kind, anon, user, email, 0..6u8, 0..3u8).prop_map(|(kind, a, u, e, t, rev)| {
                let mut m = json!({
                    "type": kind,
                    "timestamp": format!("2026-11-23T10:00:0{t}.000Z"),
                    "context": {"consent": {"categoryPreferences": {"analytics": rev != 1}},
                                "userAgent": format!("ua{t}")},
                });
                // Every generated event carries at least one identifier.
                if let Some(a) = a.or(if u.is_none() { Some(0) } else { None }) {
                    m[if kind == "alias" {
                        "previousId"
                    } else {
                        "anonymousId"
                    }] = json!(format!("a{a}"));
                }
                if let Some(u) = u {
                    m["userId"] = json!(format!("u{u}"));
                }
                if let Some(e) = e {
                    m[if kind == "identify" {
                        "traits"
                    } else {
                        "properties"
                    }] = json!({"email": format!("E{e}@x.y"), "plan": format!("p{t}")});
                }
                if kind == "track" {
                    m["event"] = json!("Order Completed");
                    m["properties"]["revenue"] = json!(rev);
                }
                m
            })
        }

        fn snapshot(g: &Engine) -> Vec<(String, Value, Vec<Merge>, Vec<Dropped>)> {
            let mut ids: Vec<&Identifier> = g.node_index.keys().collect();
            ids.sort();
            ids.into_iter()
                .filter_map(|id| {
                    let (m, d) = g.merges(id)?;
                    Some((id.to_string(), g.profile_json(id)?, m, d))
                })
                .collect()
        }

        proptest! {
            #[test]
            fn permutations_of_the_same_events_give_the_same_profiles(
                (events, shuffled) in prop::collection::vec(event(), 1..24)
                    .prop_flat_map(|v| {
                        let v: Vec<Value> = v.into_iter().enumerate().map(|(i, mut m)| {
                            m["messageId"] = json!(format!("m{i:02}"));
                            m
                        }).collect();
                        (Just(v.clone()), Just(v).prop_shuffle())
                    })
            ) {
                let config = IdentityConfig::default();
                let mut a = Engine::new(config.clone());
                for m in &events {
                    a.apply(&EventInput::from_message(m, &config));
                }
                let mut b = Engine::new(config.clone());
                for m in &shuffled {
                    b.apply(&EventInput::from_message(m, &config));
                }
                let (sa, sb) = (snapshot(&a), snapshot(&b));
                prop_assert!(!sa.is_empty());
                prop_assert_eq!(sa, sb);
            }

            #[test]
            fn a_saved_graph_restores_to_the_same_profiles(
                events in prop::collection::vec(event(), 1..24)
            ) {
                let config = IdentityConfig::default();
                let mut a = Engine::new(config.clone());
                for (i, m) in events.iter().enumerate() {
                    let mut m = m.clone();
                    m["messageId"] = json!(format!("m{i:02}"));
                    a.apply(&EventInput::from_message(&m, &config));
                }
                let mut b = Engine::new(config.clone());
                for (_, saved) in a.take_dirty() {
                    prop_assert!(b.restore(&saved).is_some());
                }
                b.finish_restore();
                prop_assert_eq!(snapshot(&a), snapshot(&b));
            }
        }
    }
}
