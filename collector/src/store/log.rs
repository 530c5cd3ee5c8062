//! The embedded engine's durability point and body store: an append-only, checksummed,
//! segmented log of write groups in `<data dir>/log/`.
//!
//! One frame per group commit: `magic u32 | payload length u32 | crc32 u32 | payload`, the
//! payload being the group number (u64) and its records. Frames are written whole and
//! `fdatasync`ed once per group; a frame cut short by a crash (a torn tail) fails its length or
//! checksum and is truncated at start-up. Segments are named after the first group they hold
//! (`00000000000000000042.seg`).
//!
//! An event's JSON body is written here once and stays here: SQLite indexes each event by its
//! [`Position`] and reads the body back from the segment ([`BodyReader`]). Erasing an event
//! zeroes its record in place ([`scrub`]); frames whose groups SQLite already holds are
//! therefore not checksummed when a segment is read again, only stepped over.

use super::{FailedEvent, Identifiers};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0x5345_414d;
const HEADER: usize = 12;
/// A frame is one group; groups are bounded (events and bytes), so this only stops garbage.
const MAX_FRAME: usize = 1 << 30;
/// A new segment starts once the current one passes this size.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const SUFFIX: &str = ".seg";
/// Synced bytes behind the end of the segment that stay in the page cache, for reads of the
/// newest events; older ones are dropped from it (see [`LogWriter::append`]).
const CACHED_TAIL: u64 = 8 * 1024 * 1024;
/// Synced pages are dropped a megabyte at a time, not after every group.
const DROP_STEP: u64 = 1024 * 1024;
/// Deleted segments kept for reuse by versions that deleted segments once indexed; removed at
/// start-up.
const SPARE: &str = ".spare";

/// Where an event's record lies in the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// The segment, by the first group it holds.
    pub segment: u64,
    /// Byte offset of the record in the segment.
    pub offset: u64,
    /// Length of the record in bytes.
    pub len: u32,
}

/// An event as SQLite indexes it: its columns, and where its record (with the body) is logged.
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
    pub at: Position,
}

/// One logged change, applied to SQLite in log order.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Event(EventRow),
    /// A refused message, and where its record lies (an erasure of the person it names zeroes
    /// it).
    Failed {
        failed: FailedEvent,
        at: Position,
    },
    /// An erasure, and where its own record lies (it names the erased identifiers, so it is
    /// zeroed too once applied).
    Delete {
        ids: Identifiers,
        at: Position,
    },
}

const EVENT: u8 = 1;
const FAILED: u8 = 2;
/// An erasure by identifiers only, as written before erasure could name events by seq; still
/// read so that a log written by an older version replays.
const DELETE: u8 = 3;
const DELETE_WITH_SEQS: u8 = 4;
/// An erasure that also names the person's emails and phones (for their refused messages).
/// Written only when there are some, so that a log without such an erasure stays readable by
/// the versions before it.
const DELETE_WITH_CONTACTS: u8 = 5;
/// An erasure that also names the person's external IDs (after the emails and phones); written
/// only when there are some, for the same reason.
const DELETE_WITH_EXTERNALS: u8 = 6;
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

/// Appends an event record to a frame payload being built. Its body is `json` (the message, a
/// JSON object) with `"seq"` spliced in as the first field, written straight into the frame.
fn encode_event(buf: &mut Vec<u8>, e: &EventRow, json: &str) {
    let rest = json.strip_prefix('{').unwrap_or("}");
    let sep: &[u8] = if rest.starts_with('}') { b"" } else { b"," };
    let mut digits = itoa::Buffer::new();
    let body: [&[u8]; 4] = [
        b"{\"seq\":",
        digits.format(e.seq).as_bytes(),
        sep,
        rest.as_bytes(),
    ];
    buf.push(EVENT);
    put_u64(buf, e.seq);
    put_u64(buf, e.received_at_ms as u64);
    put_u64(buf, e.fingerprint);
    put_str(buf, &e.write_key);
    put_str(buf, &e.message_id);
    put_opt(buf, &e.user_id);
    put_opt(buf, &e.anonymous_id);
    put_u32(buf, body.iter().map(|p| p.len()).sum::<usize>() as u32);
    for piece in body {
        buf.extend_from_slice(piece);
    }
}

fn encode_failed(buf: &mut Vec<u8>, f: &FailedEvent) {
    buf.push(FAILED);
    put_str(buf, &f.received_at);
    put_str(buf, &f.write_key);
    put_str(buf, &f.code);
    put_str(buf, &f.message);
    put_str(buf, &f.raw);
}

fn encode_delete(buf: &mut Vec<u8>, ids: &Identifiers) {
    let externals = !ids.externals.is_empty();
    let contacts = externals || !ids.emails.is_empty() || !ids.phones.is_empty();
    buf.push(if externals {
        DELETE_WITH_EXTERNALS
    } else if contacts {
        DELETE_WITH_CONTACTS
    } else {
        DELETE_WITH_SEQS
    });
    put_strs(buf, &ids.user_ids);
    put_strs(buf, &ids.anonymous_ids);
    put_u32(buf, ids.seqs.len() as u32);
    for &seq in &ids.seqs {
        put_u64(buf, seq);
    }
    if contacts {
        put_strs(buf, &ids.emails);
        put_strs(buf, &ids.phones);
    }
    if externals {
        put_u32(buf, ids.externals.len() as u32);
        for (ty, id) in &ids.externals {
            put_str(buf, ty);
            put_str(buf, id);
        }
    }
}

/// Reads a payload written by the `encode_*` functions; `None` on any inconsistency.
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
    fn str_of(&mut self, len: u32) -> Option<&'a str> {
        std::str::from_utf8(self.take(len as usize)?).ok()
    }
    fn str(&mut self) -> Option<&'a str> {
        let len = self.u32()?;
        self.str_of(len)
    }
    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }
    fn opt(&mut self) -> Option<Option<String>> {
        match self.u32()? {
            NONE => Some(None),
            len => self.str_of(len).map(|s| Some(s.to_owned())),
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
    fn pairs(&mut self) -> Option<Vec<(String, String)>> {
        let n = self.u32()? as usize;
        // Each pair costs at least its two 4-byte lengths, which bounds `n` by the payload.
        if n > self.0.len() / 8 {
            return None;
        }
        (0..n)
            .map(|_| Some((self.string()?, self.string()?)))
            .collect()
    }
    fn seqs(&mut self) -> Option<Vec<u64>> {
        let n = self.u32()? as usize;
        // Each seq takes 8 bytes, which bounds `n` by the payload.
        if n > self.0.len() / 8 {
            return None;
        }
        (0..n).map(|_| self.u64()).collect()
    }
    /// An event record's fields up to its body, which is left next.
    fn event_head(&mut self) -> Option<EventRow> {
        Some(EventRow {
            seq: self.u64()?,
            received_at_ms: self.u64()? as i64,
            fingerprint: self.u64()?,
            write_key: self.string()?,
            message_id: self.string()?,
            user_id: self.opt()?,
            anonymous_id: self.opt()?,
            at: Position::default(),
        })
    }
    /// The next record; its position is left for the caller to fill in.
    fn record(&mut self) -> Option<Record> {
        Some(match self.u8()? {
            EVENT => {
                let row = self.event_head()?;
                self.str()?;
                Record::Event(row)
            }
            FAILED => Record::Failed {
                failed: FailedEvent {
                    id: 0,
                    received_at: self.string()?,
                    write_key: self.string()?,
                    code: self.string()?,
                    message: self.string()?,
                    raw: self.string()?,
                },
                at: Position::default(),
            },
            DELETE => Record::Delete {
                ids: Identifiers {
                    user_ids: self.strs()?,
                    anonymous_ids: self.strs()?,
                    ..Identifiers::default()
                },
                at: Position::default(),
            },
            tag @ (DELETE_WITH_SEQS | DELETE_WITH_CONTACTS | DELETE_WITH_EXTERNALS) => {
                let mut ids = Identifiers {
                    user_ids: self.strs()?,
                    anonymous_ids: self.strs()?,
                    seqs: self.seqs()?,
                    ..Identifiers::default()
                };
                if tag != DELETE_WITH_SEQS {
                    ids.emails = self.strs()?;
                    ids.phones = self.strs()?;
                }
                if tag == DELETE_WITH_EXTERNALS {
                    ids.externals = self.pairs()?;
                }
                Record::Delete {
                    ids,
                    at: Position::default(),
                }
            }
            _ => return None,
        })
    }
}

impl Record {
    /// Where the record lies in the log, for the records that are read or zeroed there.
    pub fn position_mut(&mut self) -> Option<&mut Position> {
        match self {
            Record::Event(e) => Some(&mut e.at),
            Record::Delete { at, .. } | Record::Failed { at, .. } => Some(at),
        }
    }
}

/// An event as read back from its log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent {
    pub write_key: String,
    /// The stored JSON.
    pub body: String,
}

/// The event record `record` (the bytes at its [`Position`]), checked to be the event `seq`.
fn logged_event(record: &[u8], seq: u64) -> Option<LoggedEvent> {
    let mut cursor = Cursor(record);
    if cursor.u8()? != EVENT {
        return None;
    }
    let head = cursor.event_head()?;
    let body = cursor.str()?;
    (head.seq == seq && cursor.0.is_empty()).then(|| LoggedEvent {
        write_key: head.write_key,
        body: body.to_owned(),
    })
}

/// A frame ready to be written: header space reserved, then the group number.
pub struct FrameBuilder {
    buf: Vec<u8>,
}

impl FrameBuilder {
    pub fn new(group: u64) -> Self {
        Self::with_buffer(group, Vec::with_capacity(1 << 20))
    }
    /// A frame built in `buf`, the bytes [`Self::finish`] gave back for an earlier frame: the
    /// writer reuses one buffer, since a fresh megabyte each group came back from the
    /// allocator as pages the kernel had to fault in and zero again.
    pub fn with_buffer(group: u64, mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.resize(HEADER, 0);
        put_u64(&mut buf, group);
        FrameBuilder { buf }
    }
    /// Adds an event whose body is the message `json` with `seq` first (see
    /// [`encode_event`]). Returns the record's position in the frame (segment 0):
    /// [`LogWriter::append`] says where the frame went.
    pub fn push_event(&mut self, row: &EventRow, json: &str) -> Position {
        self.push(|buf| encode_event(buf, row, json))
    }
    /// Adds a refused message; returns its position like [`Self::push_event`].
    pub fn push_failed(&mut self, failed: &FailedEvent) -> Position {
        self.push(|buf| encode_failed(buf, failed))
    }
    /// Adds an erasure; returns its position like [`Self::push_event`].
    pub fn push_delete(&mut self, ids: &Identifiers) -> Position {
        self.push(|buf| encode_delete(buf, ids))
    }
    fn push(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Position {
        let offset = self.buf.len() as u64;
        encode(&mut self.buf);
        Position {
            segment: 0,
            offset,
            len: (self.buf.len() as u64 - offset) as u32,
        }
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
/// groups after `after` only; the frames up to `after` are stepped over by their length, since
/// erasures may have zeroed records in them. A frame that is cut short, fails its checksum, or
/// does not carry the next group number (a reused segment's old frames) ends the segment.
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
        if crc32fast::hash(payload) != crc {
            break;
        }
        let mut records = Vec::new();
        let mut ok = true;
        while !cursor.0.is_empty() {
            let offset = (at + HEADER + len - cursor.0.len()) as u64;
            match cursor.record() {
                Some(mut r) => {
                    if let Some(p) = r.position_mut() {
                        let end = (at + HEADER + len - cursor.0.len()) as u64;
                        *p = Position {
                            segment: first,
                            offset,
                            len: (end - offset) as u32,
                        };
                    }
                    records.push(r)
                }
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

/// Deletes the spare segments an older version kept for reuse: they hold events already
/// indexed, whose bodies that version also kept in SQLite.
pub fn remove_spares(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == &SPARE[1..]) {
            std::fs::remove_file(path)?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
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

/// Overwrites the records at `positions` with zeros and makes that durable: an erased event
/// leaves none of its bytes in the log. Only for records whose groups SQLite holds durably,
/// since [`read_segment`] no longer checks those frames. A segment that no longer exists has
/// nothing left to erase.
pub fn scrub(dir: &Path, positions: &[Position]) -> io::Result<()> {
    let mut by_segment: HashMap<u64, Vec<Position>> = HashMap::new();
    for p in positions {
        by_segment.entry(p.segment).or_default().push(*p);
    }
    for (segment, positions) in by_segment {
        let file = match OpenOptions::new()
            .write(true)
            .open(dir.join(segment_name(segment)))
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        for p in positions {
            // Never past the end: a write there would grow the segment with zeros.
            let end = (p.offset + u64::from(p.len)).min(len);
            if end > p.offset {
                file.write_all_at(&vec![0u8; (end - p.offset) as usize], p.offset)?;
            }
        }
        file.sync_data()?;
    }
    Ok(())
}

/// Reads event bodies back from the log, keeping the segments it opened.
pub struct BodyReader {
    dir: PathBuf,
    files: HashMap<u64, File>,
    /// Bytes read per `pread` at least: more than a record when reading in log order.
    read_ahead: usize,
    /// The last bytes read: `window.len()` bytes of segment `window_segment` from
    /// `window_start`.
    window: Vec<u8>,
    window_segment: u64,
    window_start: u64,
}

impl BodyReader {
    /// For records read in any order: each read takes just its record.
    pub fn new(dir: &Path) -> Self {
        Self::with_read_ahead(dir, 0)
    }

    /// For records read in log order (by seq): reads 256 KiB at a time, so the records that
    /// follow come from memory.
    pub fn sequential(dir: &Path) -> Self {
        Self::with_read_ahead(dir, 256 * 1024)
    }

    fn with_read_ahead(dir: &Path, read_ahead: usize) -> Self {
        BodyReader {
            dir: dir.to_owned(),
            files: HashMap::new(),
            read_ahead,
            window: Vec::new(),
            window_segment: 0,
            window_start: 0,
        }
    }

    /// The record at `at`, from the window if it holds it.
    fn record(&mut self, at: Position) -> io::Result<&[u8]> {
        let len = at.len as usize;
        let held = at.segment == self.window_segment
            && at.offset >= self.window_start
            && at.offset + len as u64 <= self.window_start + self.window.len() as u64;
        if !held {
            if let std::collections::hash_map::Entry::Vacant(v) = self.files.entry(at.segment) {
                v.insert(File::open(self.dir.join(segment_name(at.segment)))?);
            }
            let file = &self.files[&at.segment];
            // Reading in log order, the window just passed is not read again: its pages go
            // back to the kernel now, and the next read-ahead reuses them (fresh page-cache
            // pages cost more than the copy, as for the writer's).
            if self.read_ahead > 0 && self.window_segment == at.segment {
                let end = self.window_start + self.window.len() as u64;
                crate::os::drop_cached(file, self.window_start, end);
            }
            self.window.resize(len.max(self.read_ahead), 0);
            let mut filled = 0;
            while filled < self.window.len() {
                match file.read_at(&mut self.window[filled..], at.offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.window.truncate(filled);
            self.window_segment = at.segment;
            self.window_start = at.offset;
            if filled < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "log segment {} ends before byte {}",
                        segment_name(at.segment),
                        at.offset + len as u64
                    ),
                ));
            }
        }
        let from = (at.offset - self.window_start) as usize;
        Ok(&self.window[from..from + len])
    }

    /// Event `seq`, logged at `at`; `None` once an erasure has zeroed it (a read can race an
    /// erasure, which deletes the row first).
    pub fn read(&mut self, seq: u64, at: Position) -> io::Result<Option<LoggedEvent>> {
        let record = self.record(at)?;
        if record.first() == Some(&0) {
            return Ok(None);
        }
        logged_event(record, seq).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the record at byte {} of log segment {} is not event {seq}",
                    at.offset,
                    segment_name(at.segment)
                ),
            )
        })
    }
}

/// The segment being appended to, owned by the writer thread.
pub struct LogWriter {
    dir: PathBuf,
    file: File,
    first_group: u64,
    len: u64,
    /// Bytes before this are no longer in the page cache.
    dropped: u64,
}

impl LogWriter {
    /// Starts the segment whose first group is `next_group`.
    pub fn create(dir: &Path, next_group: u64) -> io::Result<Self> {
        let path = dir.join(segment_name(next_group));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        sync_dir(dir)?;
        Ok(LogWriter {
            dir: dir.to_owned(),
            file,
            first_group: next_group,
            len: 0,
            dropped: 0,
        })
    }

    /// Writes a whole frame and `fdatasync`s it: once this returns, the group is durable.
    /// Returns the segment (by its first group) and the byte offset the frame starts at. On
    /// failure the segment is cut back to where it was, so no partial frame hides later ones.
    pub fn append(&mut self, frame: &[u8]) -> io::Result<(u64, u64)> {
        let at = self.len;
        let result = self
            .file
            .write_all_at(frame, at)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += frame.len() as u64;
                let until = self.len.saturating_sub(CACHED_TAIL);
                if until >= self.dropped + DROP_STEP {
                    self.drop_cached_before(until);
                }
                Ok((self.first_group, at))
            }
            Err(e) => {
                let _ = self.file.set_len(at);
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
        self.drop_cached_before(self.len);
        *self = LogWriter::create(&self.dir, next_group)?;
        Ok(())
    }

    /// Drops the synced bytes before `until` from the page cache. Written pages are
    /// rarely read again (SQLite gets the records from the writer, reads take only the
    /// bodies they page through), and freeing them lets the next appends reuse pages the
    /// kernel already holds: on this project's virtual machines, copying a frame into pages
    /// the guest had not touched yet was 60% of the writer's CPU (`perf`, 64 connections), and
    /// a Python loop appending 2.8 GB in 25 KB writes spent 7.3 s of CPU against 1.1 s when
    /// it dropped what it had synced.
    fn drop_cached_before(&mut self, until: u64) {
        crate::os::drop_cached(&self.file, self.dropped, until);
        self.dropped = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::TempDir;
    use std::io::Write as _;

    fn event_row(seq: u64) -> EventRow {
        EventRow {
            seq,
            received_at_ms: 1_700_000_000_000,
            fingerprint: 0xdead_beef,
            write_key: "k".into(),
            message_id: format!("m-{seq}"),
            user_id: None,
            anonymous_id: Some("a-ü".into()),
            at: Position::default(),
        }
    }

    fn failed() -> FailedEvent {
        FailedEvent {
            id: 0,
            received_at: "2026-11-23T10:00:00.000Z".into(),
            write_key: "k".into(),
            code: "missing_event".into(),
            message: "no event".into(),
            raw: "{}".into(),
        }
    }

    fn delete() -> Identifiers {
        Identifiers {
            user_ids: vec!["u".into()],
            anonymous_ids: vec![],
            seqs: vec![3, 1 << 40],
            emails: vec!["u@example.com".into()],
            phones: vec!["+15550100".into()],
            externals: vec![],
        }
    }

    /// What [`BodyReader`] gives for the event of [`frame`]`(seq)`.
    fn logged(seq: u64) -> LoggedEvent {
        LoggedEvent {
            write_key: "k".into(),
            body: format!("{{\"seq\":{seq}}}"),
        }
    }

    /// A frame of group `group` with one event (seq = group), a failed message and an erasure,
    /// and the positions of the three records in the frame.
    fn frame(group: u64) -> (Vec<u8>, [Position; 3]) {
        let mut frame = FrameBuilder::new(group);
        let event = frame.push_event(&event_row(group), "{}");
        let failed = frame.push_failed(&failed());
        let erasure = frame.push_delete(&delete());
        (frame.finish(), [event, failed, erasure])
    }

    /// Appends [`frame`]`(group)`; the positions of its event, failed message and erasure in the
    /// log.
    fn append_all(log: &mut LogWriter, group: u64) -> [Position; 3] {
        let (bytes, mut at) = frame(group);
        let (segment, offset) = log.append(&bytes).expect("append");
        for p in &mut at {
            p.segment = segment;
            p.offset += offset;
        }
        at
    }

    fn append(log: &mut LogWriter, group: u64) -> Position {
        append_all(log, group)[0]
    }

    #[test]
    fn frames_read_back_as_written_and_a_torn_tail_ends_the_segment() {
        let dir = TempDir::new("log");
        let mut log = LogWriter::create(&dir.0, 1).expect("create");
        let positions: Vec<[Position; 3]> = (1..=2).map(|g| append_all(&mut log, g)).collect();
        let (_, path) = segments(&dir.0).expect("list").remove(0);
        let whole = std::fs::metadata(&path).expect("meta").len();
        // A third frame cut short, as a crash mid-write leaves it.
        let (torn, _) = frame(3);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&torn[..torn.len() - 3]).expect("write");

        let read = read_segment(&path, 1, 0).expect("read");
        let groups: Vec<u64> = read.frames.iter().map(|f| f.group).collect();
        assert_eq!(groups, [1, 2]);
        let mut row = event_row(2);
        row.at = positions[1][0];
        assert_eq!(
            read.frames[1].records,
            [
                Record::Event(row),
                Record::Failed {
                    failed: failed(),
                    at: positions[1][1],
                },
                Record::Delete {
                    ids: delete(),
                    at: positions[1][2]
                }
            ]
        );
        assert_eq!(read.last_group, Some(2));
        assert_eq!(
            read.valid_len, whole,
            "the valid part ends where the torn frame starts"
        );
        // In log order through the read-ahead window, then back again.
        let mut sequential = BodyReader::sequential(&dir.0);
        for (i, p) in positions.iter().enumerate() {
            let seq = i as u64 + 1;
            let body = sequential.read(seq, p[0]).expect("body");
            assert_eq!(body, Some(logged(seq)));
        }
        let mut bodies = BodyReader::new(&dir.0);
        assert_eq!(
            bodies.read(2, positions[1][0]).expect("body"),
            Some(logged(2))
        );
        assert_eq!(
            bodies.read(1, positions[0][0]).expect("body"),
            Some(logged(1))
        );
        let err = bodies
            .read(7, positions[0][0])
            .expect_err("another event's record");
        assert!(err.to_string().contains("not event 7"), "{err}");
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let dir = TempDir::new("log");
        let mut log = LogWriter::create(&dir.0, 1).expect("create");
        append(&mut log, 1);
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
    fn a_scrubbed_record_is_zeroed_and_its_frame_stepped_over_once_applied() {
        let dir = TempDir::new("log");
        let mut log = LogWriter::create(&dir.0, 1).expect("create");
        let erased = append(&mut log, 1);
        let kept = append(&mut log, 2);
        let (_, path) = segments(&dir.0).expect("list").remove(0);
        let before = std::fs::read(&path).expect("read");
        scrub(&dir.0, &[erased]).expect("scrub");
        let after = std::fs::read(&path).expect("read");
        assert_eq!(after.len(), before.len(), "zeroed in place");
        let range = erased.offset as usize..(erased.offset + u64::from(erased.len)) as usize;
        assert!(after[range.clone()].iter().all(|b| *b == 0));
        assert_eq!(after[..range.start], before[..range.start]);
        assert_eq!(after[range.end..], before[range.end..]);
        assert!(
            !String::from_utf8_lossy(&after).contains("m-1"),
            "the erased record's IDs are gone too"
        );

        // Group 1 is applied: its frame is stepped over and group 2 still reads.
        let read = read_segment(&path, 1, 1).expect("read");
        assert_eq!(read.frames.len(), 1);
        assert_eq!(read.frames[0].group, 2);
        assert_eq!(read.valid_len, after.len() as u64);
        let mut bodies = BodyReader::new(&dir.0);
        assert_eq!(
            bodies.read(1, erased).expect("erased"),
            None,
            "nothing left to read"
        );
        assert_eq!(bodies.read(2, kept).expect("body"), Some(logged(2)));
        // Were group 1 not applied, its zeroed frame would fail its checksum.
        assert_eq!(read_segment(&path, 1, 0).expect("read").valid_len, 0);
    }

    #[test]
    fn appends_say_where_each_frame_went_and_segments_are_kept() {
        let dir = TempDir::new("log");
        let mut log = LogWriter::create(&dir.0, 1).expect("create");
        append(&mut log, 1);
        let at = append(&mut log, 2);
        assert!(at.offset > 0, "the second frame follows the first");
        log.rotate(3).expect("rotate");
        let third = append(&mut log, 3);
        assert_eq!(third.segment, 3, "a rotated log writes to the new segment");
        let names: Vec<u64> = segments(&dir.0)
            .expect("list")
            .iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(names, [1, 3], "segments are kept: they hold the bodies");
    }

    /// The tag an erasure of `ids` is written with, and whether it reads back as `ids`.
    fn erasure_written(ids: &Identifiers) -> (u8, bool) {
        let mut frame = FrameBuilder::new(1);
        let at = frame.push_delete(ids);
        let bytes = frame.finish();
        let record = &bytes[at.offset as usize..];
        let read = Cursor(record).record();
        let whole = read
            == Some(Record::Delete {
                ids: ids.clone(),
                at: Position::default(),
            });
        (record[0], whole)
    }

    #[test]
    fn an_erasure_without_emails_or_phones_is_written_as_older_versions_read_it() {
        let mut ids = delete();
        ids.emails.clear();
        ids.phones.clear();
        assert_eq!(erasure_written(&ids), (DELETE_WITH_SEQS, true));
        assert_eq!(erasure_written(&delete()), (DELETE_WITH_CONTACTS, true));
    }

    #[test]
    fn an_erasure_with_external_ids_reads_back_whole() {
        let mut ids = delete();
        ids.externals = vec![
            ("crm_id".into(), "CRM-77".into()),
            ("loyalty".into(), String::new()),
        ];
        assert_eq!(erasure_written(&ids), (DELETE_WITH_EXTERNALS, true));
    }

    #[test]
    fn spares_left_by_an_older_version_are_removed() {
        let dir = TempDir::new("log");
        std::fs::write(dir.0.join(format!("{:020}{SPARE}", 4)), b"old").expect("spare");
        LogWriter::create(&dir.0, 9).expect("create");
        assert_eq!(remove_spares(&dir.0).expect("remove"), 1);
        assert_eq!(std::fs::read_dir(&dir.0).expect("dir").count(), 1);
    }
}
