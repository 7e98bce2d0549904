//! The segment layout (`spec/shm.md`): constants, the record encoding the writer uses, and the
//! validating parser the reader uses. Every offset read from a file is checked against the
//! bounds before it is used; the parser reads the mapping only through [`Words`], a slice of
//! atomic words, so a read can neither leave the mapping nor race a writer's store.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The first eight bytes of every segment.
pub const MAGIC: [u8; 8] = *b"SMPLSHM\0";
/// The layout version this crate writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the segment header; records start here.
pub const HEADER_SIZE: usize = 128;
/// Records are whole slots of this many bytes (one cache line, so two records never share one).
pub const SLOT: usize = 64;
/// Bytes of a record's fixed part, before its key.
pub const RECORD_FIXED: usize = 32;
/// The largest segment file a reader maps (hostile sizes are refused before mapping).
pub const MAX_SEGMENT: u64 = 1 << 30;
/// The most buckets a timing record may have.
pub const MAX_BUCKETS: u32 = 4096;
/// The longest key (name plus labels) a record may have.
pub const MAX_KEY: usize = 4096;

/// Header offsets.
pub(crate) mod header {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const HEADER_SIZE: usize = 12;
    pub const SLOT_SIZE: usize = 16;
    pub const PID: usize = 24;
    pub const START_TIME: usize = 32;
    pub const GENERATION: usize = 40;
    pub const USED: usize = 48;
}

/// Record offsets, from the record's start.
pub(crate) mod record {
    pub const KIND: usize = 0;
    pub const SCALE: usize = 1;
    pub const NAME_LEN: usize = 2;
    pub const KEY_LEN: usize = 4;
    pub const LABEL_COUNT: usize = 6;
    pub const SLOTS: usize = 8;
    pub const NBUCKETS: usize = 12;
    pub const OFFSET: usize = 16;
    pub const KEY: usize = 32;
}

/// Timing value words, from the value's start: the sequence word, then the fields it guards.
pub(crate) mod timing {
    pub const SEQ: usize = 0;
    pub const SUM: usize = 8;
    pub const MIN: usize = 16;
    pub const MAX: usize = 24;
    pub const ZERO: usize = 32;
    pub const BUCKETS: usize = 40;
}

/// The kind byte of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A `u64` total, added to with one atomic add.
    Counter = 1,
    /// An `f64` (its bits), set with one store.
    Gauge = 2,
    /// A histogram of durations in seconds, guarded by a sequence word.
    Timing = 3,
}

impl RecordKind {
    fn from_byte(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Counter),
            2 => Some(RecordKind::Gauge),
            3 => Some(RecordKind::Timing),
            _ => None,
        }
    }
}

/// The bucket window of a timing record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimingShape {
    /// Buckets per power of two are `2^scale`.
    pub scale: i8,
    /// The index of the first bucket; values below it count there.
    pub offset: i32,
    /// How many buckets; values above the last count there.
    pub nbuckets: u32,
}

impl Default for TimingShape {
    /// Scale 3 over `(2^-20, 2^12]` seconds (about 1 µs to 68 min): 256 buckets.
    fn default() -> Self {
        TimingShape {
            scale: 3,
            offset: -160,
            nbuckets: 256,
        }
    }
}

pub(crate) const fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// The byte length of a record's value.
pub(crate) fn value_len(kind: RecordKind, nbuckets: u32) -> usize {
    match kind {
        RecordKind::Counter | RecordKind::Gauge => 8,
        RecordKind::Timing => timing::BUCKETS + 8 * nbuckets as usize,
    }
}

/// Where the value starts, from the record's start.
pub(crate) fn value_start(key_len: usize) -> usize {
    RECORD_FIXED + align8(key_len)
}

/// The number of slots a record takes.
pub(crate) fn slots_for(kind: RecordKind, key_len: usize, nbuckets: u32) -> usize {
    (value_start(key_len) + value_len(kind, nbuckets)).div_ceil(SLOT)
}

/// The key bytes: the name, then `\0 key \0 value` per label.
pub(crate) fn encode_key(name: &str, labels: &[(&str, &str)]) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 16 * labels.len());
    key.extend_from_slice(name.as_bytes());
    for (k, v) in labels {
        key.push(0);
        key.extend_from_slice(k.as_bytes());
        key.push(0);
        key.extend_from_slice(v.as_bytes());
    }
    key
}

/// The fixed part of a record, little-endian.
pub(crate) fn encode_fixed(
    kind: RecordKind,
    name_len: usize,
    key_len: usize,
    label_count: usize,
    slots: usize,
    shape: Option<TimingShape>,
) -> [u8; RECORD_FIXED] {
    let mut b = [0u8; RECORD_FIXED];
    b[record::KIND] = kind as u8;
    let shape = shape.unwrap_or(TimingShape {
        scale: 0,
        offset: 0,
        nbuckets: 0,
    });
    b[record::SCALE] = shape.scale as u8;
    b[record::NAME_LEN..][..2].copy_from_slice(&(name_len as u16).to_le_bytes());
    b[record::KEY_LEN..][..2].copy_from_slice(&(key_len as u16).to_le_bytes());
    b[record::LABEL_COUNT..][..2].copy_from_slice(&(label_count as u16).to_le_bytes());
    b[record::SLOTS..][..4].copy_from_slice(&(slots as u32).to_le_bytes());
    b[record::NBUCKETS..][..4].copy_from_slice(&shape.nbuckets.to_le_bytes());
    b[record::OFFSET..][..4].copy_from_slice(&shape.offset.to_le_bytes());
    b
}

/// The header a writer starts a segment with (`generation` and `used` 0).
pub(crate) fn encode_header(pid: u64, start_time_ns: u64) -> [u8; HEADER_SIZE] {
    let mut b = [0u8; HEADER_SIZE];
    b[header::MAGIC..][..8].copy_from_slice(&MAGIC);
    b[header::VERSION..][..4].copy_from_slice(&VERSION.to_le_bytes());
    b[header::HEADER_SIZE..][..4].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
    b[header::SLOT_SIZE..][..4].copy_from_slice(&(SLOT as u32).to_le_bytes());
    b[header::PID..][..8].copy_from_slice(&pid.to_le_bytes());
    b[header::START_TIME..][..8].copy_from_slice(&start_time_ns.to_le_bytes());
    b
}

/// A view of mapped memory as 64-bit words, read with atomic loads only. Every accessor is
/// bounds-checked and returns `None` past the end, so a hostile offset cannot read outside.
#[derive(Clone, Copy, Debug)]
pub struct Words<'a>(pub(crate) &'a [AtomicU64]);

impl<'a> Words<'a> {
    /// A view of words (as the tests build from bytes).
    pub fn new(words: &'a [AtomicU64]) -> Self {
        Words(words)
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len() * 8
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The word at an 8-aligned byte offset.
    pub(crate) fn cell(&self, off: usize) -> Option<&'a AtomicU64> {
        if off % 8 != 0 {
            return None;
        }
        self.0.get(off / 8)
    }

    /// The little-endian `u64` at an 8-aligned byte offset.
    pub(crate) fn u64_at(&self, off: usize) -> Option<u64> {
        self.cell(off).map(|w| u64::from_le(w.load(Relaxed)))
    }

    /// Copies `len` bytes from `off`.
    pub(crate) fn bytes(&self, off: usize, len: usize) -> Option<Vec<u8>> {
        let end = off.checked_add(len)?;
        if end > self.len() {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        let mut at = off;
        while at < end {
            let word = self.0[at / 8].load(Relaxed).to_le_bytes();
            let from = at % 8;
            let take = (8 - from).min(end - at);
            out.extend_from_slice(&word[from..from + take]);
            at += take;
        }
        Some(out)
    }
}

/// Words built from bytes (the tail padded with zeros), for the fuzz tests and tools.
pub fn words_from_bytes(bytes: &[u8]) -> Vec<AtomicU64> {
    bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            AtomicU64::new(u64::from_le_bytes(w))
        })
        .collect()
}

/// Why a segment was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Shorter than a header.
    #[error("file of {0} bytes is shorter than the {HEADER_SIZE}-byte header")]
    Short(u64),
    /// Larger than a reader maps.
    #[error("file of {0} bytes is larger than the {MAX_SEGMENT}-byte limit")]
    TooLarge(u64),
    /// Not a segment.
    #[error("bad magic {0:02x?}")]
    Magic(Vec<u8>),
    /// Another layout version.
    #[error("unsupported version {0} (this reader reads version {VERSION})")]
    Version(u32),
    /// A header field with an impossible value.
    #[error("bad header: {0}")]
    Header(String),
    /// A record that breaks the layout.
    #[error("bad record at byte {at}: {why}")]
    Record {
        /// Byte offset of the record in the file.
        at: usize,
        /// What is wrong.
        why: String,
    },
}

/// The header fields a reader uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The writer's process id.
    pub pid: u64,
    /// When the writer created the segment, in nanoseconds since the Unix epoch.
    pub start_time_ns: u64,
    /// Counts record directory changes.
    pub generation: u64,
    /// Bytes of records published after the header.
    pub used: u64,
}

/// Reads and checks the header of a mapped segment of `words.len()` bytes.
pub fn parse_header(words: Words<'_>) -> Result<Header, Invalid> {
    let len = words.len() as u64;
    if len < HEADER_SIZE as u64 {
        return Err(Invalid::Short(len));
    }
    let magic = words.bytes(header::MAGIC, 8).ok_or(Invalid::Short(len))?;
    if magic != MAGIC {
        return Err(Invalid::Magic(magic));
    }
    let w1 = words.u64_at(header::VERSION).ok_or(Invalid::Short(len))?;
    let version = w1 as u32;
    if version != VERSION {
        return Err(Invalid::Version(version));
    }
    let header_size = (w1 >> 32) as u32;
    if header_size as usize != HEADER_SIZE {
        return Err(Invalid::Header(format!(
            "header size {header_size}, expected {HEADER_SIZE}"
        )));
    }
    let slot = words.u64_at(header::SLOT_SIZE).ok_or(Invalid::Short(len))? as u32;
    if slot as usize != SLOT {
        return Err(Invalid::Header(format!(
            "slot size {slot}, expected {SLOT}"
        )));
    }
    let pid = words.u64_at(header::PID).ok_or(Invalid::Short(len))?;
    let start_time_ns = words
        .u64_at(header::START_TIME)
        .ok_or(Invalid::Short(len))?;
    let generation = words
        .u64_at(header::GENERATION)
        .ok_or(Invalid::Short(len))?;
    let used = words.u64_at(header::USED).ok_or(Invalid::Short(len))?;
    if used % SLOT as u64 != 0 || used > len - HEADER_SIZE as u64 {
        return Err(Invalid::Header(format!(
            "{used} bytes of records in a file of {len} bytes"
        )));
    }
    Ok(Header {
        pid,
        start_time_ns,
        generation,
        used,
    })
}

/// One validated record: where its value is, and what it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Counter, gauge or timing.
    pub kind: RecordKind,
    /// The metric name (checked against the naming rules).
    pub name: String,
    /// The labels, keys checked.
    pub labels: Vec<(String, String)>,
    /// Byte offset of the value in the file (8-aligned, inside the record).
    pub value_at: usize,
    /// The bucket window, for a timing.
    pub shape: Option<TimingShape>,
    /// Byte offset of the next record in the file.
    pub next: usize,
}

/// Parses and checks the record at byte `at` of a segment whose records end at `end`.
pub fn parse_record(words: Words<'_>, at: usize, end: usize) -> Result<Record, Invalid> {
    let bad = |why: String| Invalid::Record { at, why };
    if at % SLOT != 0 || at.checked_add(RECORD_FIXED).map_or(true, |e| e > end) {
        return Err(bad("record header past the published end".into()));
    }
    let fixed = words
        .bytes(at, RECORD_FIXED)
        .ok_or_else(|| bad("record header past the mapping".into()))?;
    let u16_at = |o: usize| u16::from_le_bytes([fixed[o], fixed[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(fixed[o..o + 4].try_into().expect("4 bytes"));
    let kind = RecordKind::from_byte(fixed[record::KIND])
        .ok_or_else(|| bad(format!("unknown kind {}", fixed[record::KIND])))?;
    let name_len = u16_at(record::NAME_LEN);
    let key_len = u16_at(record::KEY_LEN);
    let label_count = u16_at(record::LABEL_COUNT);
    let slots = u32_at(record::SLOTS) as usize;
    if key_len > MAX_KEY || name_len > key_len || name_len == 0 {
        return Err(bad(format!("name length {name_len}, key length {key_len}")));
    }
    let shape = match kind {
        RecordKind::Timing => {
            let scale = fixed[record::SCALE] as i8;
            let nbuckets = u32_at(record::NBUCKETS);
            let offset = u32_at(record::OFFSET) as i32;
            if !(sampler_api::distribution::MIN_SCALE..=sampler_api::distribution::MAX_SCALE)
                .contains(&scale)
            {
                return Err(bad(format!("timing scale {scale} out of range")));
            }
            if nbuckets == 0 || nbuckets > MAX_BUCKETS {
                return Err(bad(format!("{nbuckets} timing buckets")));
            }
            if offset.checked_add(nbuckets as i32).is_none() {
                return Err(bad(format!("timing offset {offset} overflows")));
            }
            Some(TimingShape {
                scale,
                offset,
                nbuckets,
            })
        }
        _ => None,
    };
    let need = slots_for(kind, key_len, shape.map_or(0, |s| s.nbuckets));
    if slots != need {
        return Err(bad(format!("{slots} slots, the layout needs {need}")));
    }
    let next = at + slots * SLOT;
    if next > end {
        return Err(bad(format!(
            "{slots} slots run past the published end {end}"
        )));
    }
    let key = words
        .bytes(at + record::KEY, key_len)
        .ok_or_else(|| bad("key past the mapping".into()))?;
    let name =
        std::str::from_utf8(&key[..name_len]).map_err(|_| bad("name is not UTF-8".into()))?;
    sampler_api::validate_name(name).map_err(|e| bad(format!("name {name:?}: {e}")))?;
    let mut labels = Vec::with_capacity(label_count);
    if label_count > 0 {
        if key.get(name_len) != Some(&0) {
            return Err(bad("labels do not start with a NUL byte".into()));
        }
        let rest = &key[name_len + 1..];
        let parts: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
        if parts.len() != 2 * label_count {
            return Err(bad(format!(
                "{} label parts for {label_count} labels",
                parts.len()
            )));
        }
        for pair in parts.chunks(2) {
            let k =
                std::str::from_utf8(pair[0]).map_err(|_| bad("label key is not UTF-8".into()))?;
            let v =
                std::str::from_utf8(pair[1]).map_err(|_| bad("label value is not UTF-8".into()))?;
            sampler_api::validate_label_key(k).map_err(|e| bad(format!("label key {k:?}: {e}")))?;
            if labels.iter().any(|(seen, _): &(String, String)| seen == k) {
                return Err(bad(format!("label key {k:?} twice")));
            }
            labels.push((k.to_owned(), v.to_owned()));
        }
    } else if key_len != name_len {
        return Err(bad("key bytes after the name but no labels".into()));
    }
    Ok(Record {
        kind,
        name: name.to_owned(),
        labels,
        value_at: at + value_start(key_len),
        shape,
        next,
    })
}

/// Parses every record of a segment held in `words` (a check of a whole file, as the fuzz
/// tests use it): the header and each record from the first to the published end.
pub fn parse_segment(words: Words<'_>) -> Result<(Header, Vec<Record>), Invalid> {
    let header = parse_header(words)?;
    let end = HEADER_SIZE + header.used as usize;
    let mut at = HEADER_SIZE;
    let mut records = Vec::new();
    while at < end {
        let r = parse_record(words, at, end)?;
        at = r.next;
        records.push(r);
    }
    Ok((header, records))
}
