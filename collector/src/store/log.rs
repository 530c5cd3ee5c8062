//! The embedded engine's durability point: an append-only, checksummed, segmented log of
//! write groups in `<data dir>/log/`.
//!
//! One frame per group commit: `magic u32 | payload length u32 | crc32 u32 | payload`, the
//! payload being the group number (u64) and its records. Frames are written whole and
//! `fdatasync`ed once per group; a frame cut short by a crash (a torn tail) fails its length or
//! checksum and is truncated at start-up. Segments are named after the first group they hold
//! (`00000000000000000042.seg`), so a whole segment can be deleted once every group in it is
//! durable in SQLite. A deleted segment is kept as a spare (`*.spare`, at most [`MAX_SPARES`])
//! and overwritten as the next segment: `fdatasync` over blocks already written needs no
//! journal commit (measured here: 0.5 ms instead of 2 ms at the median). Its old frames are
//! told apart by their group numbers, which must follow on from the segment's name. After an
//! erasure, segments and spares are deleted outright, so erased events do not linger.

use super::{FailedEvent, Identifiers};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write as _};
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0x5345_414d;
const HEADER: usize = 12;
/// A frame is one group; groups are bounded (events and bytes), so this only stops garbage.
const MAX_FRAME: usize = 1 << 30;
/// A new segment starts once the current one passes this size.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const SUFFIX: &str = ".seg";
const SPARE: &str = ".spare";
/// Deleted segments kept for reuse.
pub const MAX_SPARES: usize = 2;

/// An event as it goes into SQLite: the columns, and the body with `seq` spliced in.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    pub seq: u64,
    pub received_at_ms: i64,
    /// Dedup fingerprint of (write key, messageId).
    pub fingerprint: u64,
    pub write_key: String,
    pub message_id: String,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub body: String,
}

/// One logged change, applied to SQLite in log order.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Event(EventRow),
    Failed(FailedEvent),
    Delete(Identifiers),
}

const EVENT: u8 = 1;
const FAILED: u8 = 2;
/// An erasure by identifiers only, as written before erasure could name events by seq; still
/// read so that a log written by an older version replays.
const DELETE: u8 = 3;
const DELETE_WITH_SEQS: u8 = 4;
const NONE: u32 = u32::MAX;

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}
fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_u32(buf, s.len() as u32);
    buf.extend_from_slice(s.as_bytes());
}
fn put_opt(buf: &mut Vec<u8>, s: &Option<String>) {
    match s {
        Some(s) => put_str(buf, s),
        None => put_u32(buf, NONE),
    }
}
fn put_strs(buf: &mut Vec<u8>, v: &[String]) {
    put_u32(buf, v.len() as u32);
    for s in v {
        put_str(buf, s);
    }
}

/// Appends one record's encoding to a frame payload being built.
pub fn encode(buf: &mut Vec<u8>, record: &Record) {
    match record {
        Record::Event(e) => {
            buf.push(EVENT);
            put_u64(buf, e.seq);
            put_u64(buf, e.received_at_ms as u64);
            put_u64(buf, e.fingerprint);
            put_str(buf, &e.write_key);
            put_str(buf, &e.message_id);
            put_opt(buf, &e.user_id);
            put_opt(buf, &e.anonymous_id);
            put_str(buf, &e.body);
        }
        Record::Failed(f) => {
            buf.push(FAILED);
            put_str(buf, &f.received_at);
            put_str(buf, &f.write_key);
            put_str(buf, &f.code);
            put_str(buf, &f.message);
            put_str(buf, &f.raw);
        }
        Record::Delete(ids) => {
            buf.push(DELETE_WITH_SEQS);
            put_strs(buf, &ids.user_ids);
            put_strs(buf, &ids.anonymous_ids);
            put_u32(buf, ids.seqs.len() as u32);
            for &seq in &ids.seqs {
                put_u64(buf, seq);
            }
        }
    }
}

/// Reads a payload written by [`encode`]; `None` on any inconsistency.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn str_of(&mut self, len: u32) -> Option<String> {
        let bytes = self.take(len as usize)?;
        String::from_utf8(bytes.to_vec()).ok()
    }
    fn string(&mut self) -> Option<String> {
        let len = self.u32()?;
        self.str_of(len)
    }
    fn opt(&mut self) -> Option<Option<String>> {
        match self.u32()? {
            NONE => Some(None),
            len => self.str_of(len).map(Some),
        }
    }
    fn strs(&mut self) -> Option<Vec<String>> {
        let n = self.u32()? as usize;
        // Each string costs at least its 4-byte length, which bounds `n` by the payload.
        if n > self.0.len() / 4 {
            return None;
        }
        (0..n).map(|_| self.string()).collect()
    }
    fn seqs(&mut self) -> Option<Vec<u64>> {
        let n = self.u32()? as usize;
        // Each seq takes 8 bytes, which bounds `n` by the payload.
        if n > self.0.len() / 8 {
            return None;
        }
        (0..n).map(|_| self.u64()).collect()
    }
    fn record(&mut self) -> Option<Record> {
        Some(match self.u8()? {
            EVENT => Record::Event(EventRow {
                seq: self.u64()?,
                received_at_ms: self.u64()? as i64,
                fingerprint: self.u64()?,
                write_key: self.string()?,
                message_id: self.string()?,
                user_id: self.opt()?,
                anonymous_id: self.opt()?,
                body: self.string()?,
            }),
            FAILED => Record::Failed(FailedEvent {
                id: 0,
                received_at: self.string()?,
                write_key: self.string()?,
                code: self.string()?,
                message: self.string()?,
                raw: self.string()?,
            }),
            DELETE => Record::Delete(Identifiers {
                user_ids: self.strs()?,
                anonymous_ids: self.strs()?,
                seqs: Vec::new(),
            }),
            DELETE_WITH_SEQS => Record::Delete(Identifiers {
                user_ids: self.strs()?,
                anonymous_ids: self.strs()?,
                seqs: self.seqs()?,
            }),
            _ => return None,
        })
    }
}

/// A frame ready to be written: header space reserved, then the group number.
pub struct FrameBuilder {
    buf: Vec<u8>,
}

impl FrameBuilder {
    pub fn new(group: u64) -> Self {
        let mut buf = Vec::with_capacity(1 << 20);
        buf.resize(HEADER, 0);
        put_u64(&mut buf, group);
        FrameBuilder { buf }
    }
    pub fn push(&mut self, record: &Record) {
        encode(&mut self.buf, record);
    }
    /// The bytes to write, with the header filled in.
    pub fn finish(mut self) -> Vec<u8> {
        let payload_len = (self.buf.len() - HEADER) as u32;
        let crc = crc32fast::hash(&self.buf[HEADER..]);
        self.buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        self.buf[4..8].copy_from_slice(&payload_len.to_le_bytes());
        self.buf[8..12].copy_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// A group read back from the log.
#[derive(Debug)]
pub struct Frame {
    pub group: u64,
    pub records: Vec<Record>,
}

fn segment_name(first_group: u64) -> String {
    format!("{first_group:020}{SUFFIX}")
}

/// Segments in the log directory as (first group, path), oldest first.
pub fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// What [`read_segment`] found.
#[derive(Debug)]
pub struct SegmentRead {
    /// The frames of groups after the `after` given, in order.
    pub frames: Vec<Frame>,
    /// Where the valid part ends.
    pub valid_len: u64,
    /// The last whole group in the segment, if any.
    pub last_group: Option<u64>,
}

/// Reads every whole frame of the segment whose first group is `first`, decoding the records of
/// groups after `after` only. A frame that is cut short, fails its checksum, or does not carry
/// the next group number (a reused segment's old frames) ends the segment.
pub fn read_segment(path: &Path, first: u64, after: u64) -> io::Result<SegmentRead> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut frames = Vec::new();
    let mut last_group = None;
    let mut at = 0usize;
    while data.len() - at >= HEADER {
        let word = |i: usize| u32::from_le_bytes(data[at + i..at + i + 4].try_into().expect("4"));
        let (magic, len, crc) = (word(0), word(4) as usize, word(8));
        if magic != MAGIC || len > MAX_FRAME || data.len() - at - HEADER < len {
            break;
        }
        let payload = &data[at + HEADER..at + HEADER + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let mut cursor = Cursor(payload);
        let Some(group) = cursor.u64() else { break };
        let expected = last_group.map_or(first, |g: u64| g + 1);
        if group != expected {
            break;
        }
        if group <= after {
            last_group = Some(group);
            at += HEADER + len;
            continue;
        }
        let mut records = Vec::new();
        let mut ok = true;
        while !cursor.0.is_empty() {
            match cursor.record() {
                Some(r) => records.push(r),
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            break;
        }
        frames.push(Frame { group, records });
        last_group = Some(group);
        at += HEADER + len;
    }
    Ok(SegmentRead {
        frames,
        valid_len: at as u64,
        last_group,
    })
}

fn spares(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == &SPARE[1..]) {
            out.push(path);
        }
    }
    Ok(out)
}

/// Cuts a segment at `len` (dropping a torn tail) and makes that durable.
pub fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment being appended to, owned by the writer thread.
pub struct LogWriter {
    dir: PathBuf,
    file: File,
    len: u64,
}

impl LogWriter {
    /// Starts the segment whose first group is `next_group`, reusing a spare if there is one.
    pub fn create(dir: &Path, next_group: u64) -> io::Result<Self> {
        let path = dir.join(segment_name(next_group));
        let spare = match path.exists() {
            true => None,
            false => spares(dir)?.pop(),
        };
        let file = match spare {
            Some(spare) => {
                std::fs::rename(&spare, &path)?;
                OpenOptions::new().write(true).open(&path)?
            }
            None => OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)?,
        };
        sync_dir(dir)?;
        Ok(LogWriter {
            dir: dir.to_owned(),
            file,
            len: 0,
        })
    }

    /// Writes a whole frame and `fdatasync`s it: once this returns, the group is durable. On
    /// failure the segment is cut back to where it was, so no partial frame hides later ones.
    pub fn append(&mut self, frame: &[u8]) -> io::Result<()> {
        let result = self
            .file
            .write_all(frame)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += frame.len() as u64;
                Ok(())
            }
            Err(e) => {
                // The next frame must start where this one did, or the group check ends the
                // segment before it.
                let _ = self.file.seek(io::SeekFrom::Start(self.len));
                Err(e)
            }
        }
    }

    /// Whether the current segment is full and the next group should start a new one.
    pub fn is_full(&self) -> bool {
        self.len >= SEGMENT_BYTES
    }

    /// Closes the current segment and starts the next at `next_group`.
    pub fn rotate(&mut self, next_group: u64) -> io::Result<()> {
        *self = LogWriter::create(&self.dir, next_group)?;
        Ok(())
    }
}

/// Retires the segments whose every group is at most `durable_group`, never the newest one:
/// kept as spares up to [`MAX_SPARES`] when `reuse`, otherwise deleted together with every
/// spare (after an erasure, no old bytes may stay).
pub fn delete_durable(dir: &Path, durable_group: u64, reuse: bool) -> io::Result<usize> {
    let all = segments(dir)?;
    let mut spare_count = spares(dir)?.len();
    let mut deleted = 0;
    for pair in all.windows(2) {
        let (first, path) = &pair[0];
        let (next_first, _) = pair[1];
        if next_first > 0 && next_first - 1 <= durable_group {
            if reuse && spare_count < MAX_SPARES {
                std::fs::rename(path, dir.join(format!("{first:020}{SPARE}")))?;
                spare_count += 1;
            } else {
                std::fs::remove_file(path)?;
            }
            deleted += 1;
        }
    }
    if !reuse {
        for spare in spares(dir)? {
            std::fs::remove_file(spare)?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        sync_dir(dir)?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::TempDir;

    fn sample() -> Vec<Record> {
        vec![
            Record::Event(EventRow {
                seq: 7,
                received_at_ms: 1_700_000_000_000,
                fingerprint: 0xdead_beef,
                write_key: "k".into(),
                message_id: "m-1".into(),
                user_id: None,
                anonymous_id: Some("a-ü".into()),
                body: "{\"seq\":7}".into(),
            }),
            Record::Failed(FailedEvent {
                id: 0,
                received_at: "2026-11-23T10:00:00.000Z".into(),
                write_key: "k".into(),
                code: "missing_event".into(),
                message: "no event".into(),
                raw: "{}".into(),
            }),
            Record::Delete(Identifiers {
                user_ids: vec!["u".into()],
                anonymous_ids: vec![],
                seqs: vec![3, 1 << 40],
            }),
        ]
    }

    #[test]
    fn frames_read_back_as_written_and_a_torn_tail_ends_the_segment() {
        let dir = TempDir::new("log");
        let mut log = LogWriter::create(&dir.0, 1).expect("create");
        for group in 1..=2 {
            let mut frame = FrameBuilder::new(group);
            for r in sample() {
                frame.push(&r);
            }
            log.append(&frame.finish()).expect("append");
        }
        let (_, path) = segments(&dir.0).expect("list").remove(0);
        let whole = std::fs::metadata(&path).expect("meta").len();
        // A third frame cut short, as a crash mid-write leaves it.
        let mut torn = FrameBuilder::new(3);
        torn.push(&sample()[0]);
        let torn = torn.finish();
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&torn[..torn.len() - 3]).expect("write");

        let read = read_segment(&path, 1, 0).expect("read");
        let groups: Vec<u64> = read.frames.iter().map(|f| f.group).collect();
        assert_eq!(groups, [1, 2]);
        assert_eq!(read.frames[1].records, sample());
        assert_eq!(read.last_group, Some(2));
        assert_eq!(
            read.valid_len, whole,
            "the valid part ends where the torn frame starts"
        );
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let dir = TempDir::new("log");
        let mut log = LogWriter::create(&dir.0, 1).expect("create");
        let mut frame = FrameBuilder::new(1);
        frame.push(&sample()[0]);
        log.append(&frame.finish()).expect("append");
        let (_, path) = segments(&dir.0).expect("list").remove(0);
        let mut data = std::fs::read(&path).expect("read");
        let last = data.len() - 2;
        data[last] ^= 0x20;
        std::fs::write(&path, data).expect("write");
        let read = read_segment(&path, 1, 0).expect("read");
        assert!(read.frames.is_empty());
        assert_eq!(read.valid_len, 0);
    }

    #[test]
    fn only_segments_wholly_durable_are_deleted_and_never_the_newest() {
        let dir = TempDir::new("log");
        let mut log = LogWriter::create(&dir.0, 1).expect("create");
        log.rotate(5).expect("rotate");
        log.rotate(9).expect("rotate");
        // Groups 1..=4 and 5..=8 are closed; 9.. is being written.
        assert_eq!(delete_durable(&dir.0, 3, true).expect("delete"), 0);
        assert_eq!(delete_durable(&dir.0, 6, true).expect("delete"), 1);
        assert_eq!(delete_durable(&dir.0, 100, true).expect("delete"), 1);
        let left: Vec<u64> = segments(&dir.0)
            .expect("list")
            .iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(left, [9]);
        assert_eq!(spares(&dir.0).expect("spares").len(), 2, "kept for reuse");
        // Segment 10 reuses one spare; after an erasure nothing old stays: segment 9 and the
        // other spare go.
        log.rotate(10).expect("rotate");
        assert_eq!(spares(&dir.0).expect("spares").len(), 1);
        assert_eq!(delete_durable(&dir.0, 9, false).expect("delete"), 2);
        assert_eq!(std::fs::read_dir(&dir.0).expect("dir").count(), 1);
    }

    #[test]
    fn a_reused_segment_s_old_frames_are_not_read_as_new_ones() {
        let dir = TempDir::new("log");
        let mut log = LogWriter::create(&dir.0, 1).expect("create");
        let frame = |group: u64| {
            let mut f = FrameBuilder::new(group);
            f.push(&sample()[0]);
            f.finish()
        };
        for group in 1..=3 {
            log.append(&frame(group)).expect("append");
        }
        log.rotate(4).expect("rotate");
        log.append(&frame(4)).expect("append");
        delete_durable(&dir.0, 3, true).expect("retire");
        // Segment 5 reuses segment 1's file: one new frame over three old ones.
        log.rotate(5).expect("rotate");
        log.append(&frame(5)).expect("append");
        let (first, path) = segments(&dir.0).expect("list").pop().expect("segment 5");
        assert_eq!(first, 5);
        let read = read_segment(&path, 5, 0).expect("read");
        let groups: Vec<u64> = read.frames.iter().map(|f| f.group).collect();
        assert_eq!(groups, [5], "groups 2 and 3 behind it are old");
        assert!(std::fs::metadata(&path).expect("meta").len() > read.valid_len);
    }
}
