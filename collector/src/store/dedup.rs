//! The in-memory index of recent `(write key, messageId)` fingerprints that makes deduplication
//! cost no random-key B-tree on disk.
//!
//! A fingerprint is 64 bits (collision odds about n / 2^64 per message). Each fingerprint is
//! also stored in its event's row, so the index is rebuilt at start-up from the newest rows.
//! Memory is about 8.5 bytes per fingerprint: recent inserts go to a small hash set that is
//! merged, once it reaches an eighth of the sorted run of its time slot, into that sorted run
//! (runs are capped, so a busy slot has several). Slots older than the window are dropped whole.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// How long a `messageId` is remembered (the contract promises at least 24 hours).
pub const WINDOW_MS: i64 = 48 * 3600 * 1000;
const SLOT_MS: i64 = 4 * 3600 * 1000;
const MIN_MERGE: usize = 16 * 1024;
/// A slot's sorted run stops growing here and a new run starts, so merging never copies more
/// than this many fingerprints (memory peaks stay small).
const MAX_RUN: usize = 2 * 1024 * 1024;

/// The fingerprint of a message: FNV-1a over the write key, a separator and the message ID,
/// finished with the SplitMix64 mixer. Stable across releases because it is stored on disk.
pub fn fingerprint(write_key: &str, message_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in write_key
        .as_bytes()
        .iter()
        .chain(&[0xff])
        .chain(message_id.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Fingerprints are already mixed: the set uses them as their own hash instead of SipHash.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type FingerprintSet = HashSet<u64, BuildHasherDefault<FingerprintHasher>>;

struct Slot {
    /// Start of the slot, ms since the epoch.
    start: i64,
    sorted: Run,
    recent: FingerprintSet,
}

/// A sorted run of fingerprints, with a directory by their top bits: `dir[b]` is where the
/// fingerprints whose top `bits` bits equal `b` start. Fingerprints are spread evenly over 64
/// bits, so a bucket holds about eight of them (one cache line) and a lookup reads two cache
/// lines: its directory entry and its bucket. (A binary search of a run of millions takes about
/// twenty reads, most of them cache misses; guessing the place by interpolation took three or
/// four, and a 128-bit division each. The writer spent 5% of the collector's CPU in these
/// lookups in `cargo xtask bench ingest`.) The directory costs half a byte per fingerprint.
#[derive(Default)]
struct Run {
    fps: Vec<u64>,
    dir: Vec<u32>,
    bits: u32,
}

/// Fingerprints per directory bucket, on average.
const PER_BUCKET: usize = 8;

impl Run {
    #[cfg(test)]
    fn new(fps: Vec<u64>) -> Self {
        let mut run = Run {
            fps,
            ..Run::default()
        };
        run.index();
        run
    }

    fn len(&self) -> usize {
        self.fps.len()
    }

    /// Rebuilds the directory after `fps` changed.
    fn index(&mut self) {
        let buckets = (self.fps.len() / PER_BUCKET).max(1);
        self.bits = buckets.ilog2();
        self.dir.clear();
        if self.bits == 0 {
            return;
        }
        let shift = 64 - self.bits;
        self.dir.reserve_exact((1 << self.bits) + 1);
        let mut at = 0;
        for bucket in 0..1u64 << self.bits {
            while at < self.fps.len() && self.fps[at] >> shift < bucket {
                at += 1;
            }
            self.dir.push(at as u32);
        }
        self.dir.push(self.fps.len() as u32);
    }

    fn contains(&self, fp: u64) -> bool {
        let bucket = if self.bits == 0 {
            &self.fps[..]
        } else {
            let b = (fp >> (64 - self.bits)) as usize;
            &self.fps[self.dir[b] as usize..self.dir[b + 1] as usize]
        };
        // Uneven runs (not seen in practice) only make a bucket longer.
        if bucket.len() <= 2 * PER_BUCKET {
            bucket.contains(&fp)
        } else {
            bucket.binary_search(&fp).is_ok()
        }
    }
}

impl Slot {
    fn contains(&self, fp: u64) -> bool {
        self.recent.contains(&fp) || self.sorted.contains(fp)
    }

    fn merge_recent(&mut self) {
        let mut add: Vec<u64> = self.recent.drain().collect();
        add.sort_unstable();
        // Merge from the back in place, so memory stays one array plus the small set.
        let sorted = &mut self.sorted.fps;
        let old_len = sorted.len();
        sorted.resize(old_len + add.len(), 0);
        let (mut i, mut j, mut k) = (old_len, add.len(), sorted.len());
        while j > 0 {
            k -= 1;
            if i > 0 && sorted[i - 1] > add[j - 1] {
                sorted[k] = sorted[i - 1];
                i -= 1;
            } else {
                sorted[k] = add[j - 1];
                j -= 1;
            }
        }
        self.sorted.index();
        self.recent.shrink_to(MIN_MERGE);
    }
}

/// Recent fingerprints by time slot.
#[derive(Default)]
pub struct DedupIndex {
    slots: VecDeque<Slot>,
    len: usize,
}

impl DedupIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, fp: u64) -> bool {
        self.slots.iter().any(|s| s.contains(fp))
    }

    /// Records a fingerprint seen at `at_ms`. Times may arrive out of order (start-up replays
    /// newest first); each goes to its own slot.
    pub fn insert(&mut self, fp: u64, at_ms: i64) {
        let start = at_ms - at_ms.rem_euclid(SLOT_MS);
        let open = |s: &Slot| s.start == start && s.sorted.len() < MAX_RUN;
        let pos = match self.slots.iter().rposition(open) {
            Some(p) => p,
            None => {
                let p = self.slots.partition_point(|s| s.start <= start);
                self.slots.insert(
                    p,
                    Slot {
                        start,
                        sorted: Run::default(),
                        recent: FingerprintSet::default(),
                    },
                );
                p
            }
        };
        let slot = &mut self.slots[pos];
        if slot.recent.insert(fp) {
            self.len += 1;
        }
        if slot.recent.len() >= MIN_MERGE.max(slot.sorted.len() / 8) {
            slot.merge_recent();
        }
    }

    /// Forgets slots that ended before the window that ends at `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        while let Some(front) = self.slots.front() {
            if front.start + SLOT_MS >= now_ms - WINDOW_MS {
                break;
            }
            let gone = self.slots.pop_front().expect("front exists");
            self.len -= gone.sorted.len() + gone.recent.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_message_is_recognised_and_other_sources_are_not_confused() {
        let mut index = DedupIndex::new();
        let fp = fingerprint("key-a", "m-1");
        index.insert(fp, 1_000);
        assert!(index.contains(fingerprint("key-a", "m-1")));
        assert!(!index.contains(fingerprint("key-b", "m-1")));
        assert!(!index.contains(fingerprint("key-a", "m-2")));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(fingerprint("ab", "c"), fingerprint("a", "bc"));
    }

    #[test]
    fn fingerprints_survive_merges_into_the_sorted_run() {
        let mut index = DedupIndex::new();
        let n = MIN_MERGE as u64 * 5 + 7;
        for i in 0..n {
            index.insert(fingerprint("k", &i.to_string()), 10_000 + i as i64);
        }
        assert_eq!(index.len(), n as usize);
        for i in 0..n {
            assert!(index.contains(fingerprint("k", &i.to_string())), "lost {i}");
        }
        assert!(!index.contains(fingerprint("k", "absent")));
    }

    #[test]
    fn a_busy_slot_starts_new_runs_and_still_finds_everything() {
        let mut index = DedupIndex::new();
        let n = (MAX_RUN + MAX_RUN / 4 + 2 * MIN_MERGE) as u64;
        for i in 0..n {
            index.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), 5_000);
        }
        assert!(
            index.slots.len() >= 2,
            "the first run must have been closed"
        );
        assert!(
            index
                .slots
                .iter()
                .all(|s| s.sorted.len() <= MAX_RUN + MAX_RUN / 8)
        );
        for i in (0..n).step_by(997) {
            assert!(index.contains(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        }
        assert_eq!(index.len(), n as usize);
    }

    #[test]
    fn the_directory_finds_every_member_and_no_other_in_even_and_uneven_runs() {
        let even: Vec<u64> = {
            let mut v: Vec<u64> = (0..5_000u64)
                .map(|i| fingerprint("k", &i.to_string()))
                .collect();
            v.sort_unstable();
            v
        };
        // Clustered at both ends, the worst case for guessing by value.
        let uneven: Vec<u64> = (0..2_000u64)
            .chain((0..2_000u64).map(|i| u64::MAX - 4_000 + 2 * i))
            .collect();
        for run in [even, uneven, vec![], vec![7]] {
            let indexed = Run::new(run.clone());
            for (i, fp) in run.iter().enumerate() {
                assert!(
                    indexed.contains(*fp),
                    "member {i} of a run of {}",
                    run.len()
                );
                for probe in [fp.wrapping_add(1), fp.wrapping_sub(1)] {
                    assert_eq!(indexed.contains(probe), run.binary_search(&probe).is_ok());
                }
            }
        }
    }

    #[test]
    fn messages_older_than_the_window_are_forgotten() {
        let mut index = DedupIndex::new();
        let day = 24 * 3600 * 1000;
        index.insert(fingerprint("k", "old"), 0);
        index.insert(fingerprint("k", "new"), 3 * day);
        index.expire(3 * day + 1);
        assert!(!index.contains(fingerprint("k", "old")));
        assert!(index.contains(fingerprint("k", "new")));
        // Still remembered a full day later.
        index.expire(4 * day);
        assert!(index.contains(fingerprint("k", "new")));
        assert_eq!(index.len(), 1);
    }
}
