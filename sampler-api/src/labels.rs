//! Label sets: the keys and values that tell the series of one metric apart.
//!
//! A label set is two shared pieces: the keys (one `Arc` per family, shared by all its series)
//! and the values packed into one allocation. Cloning a `Labels` costs two reference-count
//! increments and never copies strings. A [`LabelsRef`] reads label values in place: packed as
//! a `Labels` packs them (in a `Labels`, or copied into a snapshot), or, for a family's series
//! in a snapshot, where the family keeps each distinct value once (`text`).

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::descriptor::{validate_label_key, NameError};

mod text;

pub(crate) use text::{Text, TextPtr};

/// Shared label keys, as one family (or one sampler's series) uses them.
pub type LabelKeys = Arc<[Cow<'static, str>]>;

/// An immutable, cheaply cloned set of `key=value` labels.
///
/// Keys follow `[a-z_][a-z0-9_]*`; values are any UTF-8 text.
///
/// ```
/// use sampler_api::Labels;
/// let labels = Labels::from_pairs(&[("method", "GET"), ("route", "/a\"b")])?;
/// assert_eq!(labels.get("route"), Some("/a\"b"));
/// assert_eq!(labels.iter().count(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Labels(Option<Inner>);

#[derive(Clone)]
struct Inner {
    keys: LabelKeys,
    values: PackedValues,
}

impl Labels {
    /// The empty label set.
    pub const fn empty() -> Self {
        Labels(None)
    }

    /// A label set from `(key, value)` pairs; keys are checked against the naming rules.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, NameError> {
        if pairs.is_empty() {
            return Ok(Labels::empty());
        }
        let mut keys = Vec::with_capacity(pairs.len());
        for (k, _) in pairs {
            validate_label_key(k)?;
            keys.push(Cow::Owned(k.to_string()));
        }
        let values: Vec<&str> = pairs.iter().map(|(_, v)| *v).collect();
        Ok(Labels::with_keys(keys.into(), &values))
    }

    /// Labels from keys already checked (see [`validate_label_key`]) and values in key order.
    ///
    /// # Panics
    /// When `values.len()` differs from `keys.len()`: that is a programming error.
    pub fn with_keys(keys: LabelKeys, values: &[&str]) -> Self {
        assert_eq!(keys.len(), values.len(), "one value per label key");
        if keys.is_empty() {
            return Labels::empty();
        }
        Labels(Some(Inner {
            keys,
            values: PackedValues::new(values),
        }))
    }

    /// A borrowed view of these labels: what a snapshot's series give (see [`LabelsRef`]).
    pub fn view(&self) -> LabelsRef<'_> {
        match &self.0 {
            Some(inner) => LabelsRef {
                keys: Some(&inner.keys),
                values: Values::Packed(inner.values.bytes()),
            },
            None => LabelsRef::EMPTY,
        }
    }

    /// The keys and the packed values, when there are labels.
    pub(crate) fn parts(&self) -> Option<(&LabelKeys, &[u8])> {
        self.0.as_ref().map(|i| (&i.keys, i.values.bytes()))
    }

    /// How many labels there are.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The keys, in order. Label sets of one family share them, so an exporter may cache what
    /// it renders from them by the slice's address.
    pub fn keys(&self) -> &[Cow<'static, str>] {
        self.view().keys()
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.view().get(key)
    }

    /// The `(key, value)` pairs in their defined order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.view().iter()
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl Eq for Labels {}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.view().hash(state)
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view().fmt(f)
    }
}

impl<'a> From<&'a Labels> for LabelsRef<'a> {
    fn from(labels: &'a Labels) -> Self {
        labels.view()
    }
}

/// A borrowed label set: what [`SeriesRef::labels`](crate::SeriesRef::labels) gives, read
/// in place in the snapshot (no reference count, no copy). [`to_owned`](Self::to_owned) makes
/// a [`Labels`] to keep.
///
/// It compares and hashes as the [`Labels`] with the same pairs does.
///
/// ```
/// use sampler_api::Labels;
/// let labels = Labels::from_pairs(&[("method", "GET"), ("route", "/a")])?;
/// let view = labels.view();
/// assert_eq!(view.get("method"), Some("GET"));
/// assert_eq!(view.keys()[1], "route");
/// assert_eq!(view.to_owned(), labels);
/// assert!(view == labels);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct LabelsRef<'a> {
    keys: Option<&'a LabelKeys>,
    values: Values<'a>,
}

/// Where a [`LabelsRef`]'s values are.
#[derive(Clone, Copy)]
enum Values<'a> {
    /// Bytes laid out as [`PackedValues`] lays them out (a copy of one, whole).
    Packed(&'a [u8]),
    /// One number per key into `texts`, where the values are, each alive for `'a`
    /// (`LabelsRef::from_texts`).
    Texts {
        ids: &'a [u32],
        texts: &'a [TextPtr],
    },
}

impl<'a> LabelsRef<'a> {
    /// The empty label set.
    pub const EMPTY: LabelsRef<'static> = LabelsRef {
        keys: None,
        values: Values::Packed(&[]),
    };

    /// A view of `keys` and the bytes of a [`PackedValues`] made for them (whole: see
    /// `packed_get`'s safety argument).
    pub(crate) fn from_parts(keys: Option<&'a LabelKeys>, values: &'a [u8]) -> Self {
        LabelsRef {
            keys,
            values: Values::Packed(values),
        }
    }

    /// A view of `keys` and one value per key: `texts[ids[i]]` is the value of `keys[i]`.
    ///
    /// # Safety
    /// For every `i < keys.len()`, `texts[ids[i]]` points at a `Text` that lives for `'a`.
    pub(crate) unsafe fn from_texts(
        keys: &'a LabelKeys,
        ids: &'a [u32],
        texts: &'a [TextPtr],
    ) -> Self {
        LabelsRef {
            keys: Some(keys),
            values: Values::Texts { ids, texts },
        }
    }

    /// How many labels there are.
    pub fn len(&self) -> usize {
        self.keys.map_or(0, |k| k.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys, in order. Label sets of one family share them (one allocation for all its
    /// series, in every snapshot), so an exporter may cache what it renders from them by the
    /// slice's address.
    pub fn keys(&self) -> &'a [Cow<'static, str>] {
        self.keys.map_or(&[], |k| &k[..])
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The value of the `i`th key (`""` past the last).
    pub fn value(&self, i: usize) -> &'a str {
        if i >= self.len() {
            return "";
        }
        match self.values {
            Values::Packed(bytes) => packed_get(bytes, i),
            Values::Texts { ids, texts } => match ids.get(i).and_then(|&n| texts.get(n as usize)) {
                // SAFETY: `i < len()`, and `from_texts`' caller keeps the text of each key's
                // number alive for `'a`.
                Some(t) => unsafe { t.get() },
                None => "",
            },
        }
    }

    /// The `(key, value)` pairs in their defined order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + 'a {
        let this = *self;
        this.keys()
            .iter()
            .enumerate()
            .map(move |(i, k)| (k.as_ref(), this.value(i)))
    }

    /// An owned copy (the keys shared, the values copied into one allocation).
    pub fn to_owned(&self) -> Labels {
        match self.keys {
            Some(keys) if !keys.is_empty() => {
                let values = match self.values {
                    Values::Packed(bytes) => PackedValues(Arc::from(bytes)),
                    Values::Texts { .. } => {
                        let values: Vec<&str> = (0..keys.len()).map(|i| self.value(i)).collect();
                        PackedValues::new(&values)
                    }
                };
                Labels(Some(Inner {
                    keys: keys.clone(),
                    values,
                }))
            }
            _ => Labels::empty(),
        }
    }
}

impl PartialEq for LabelsRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for LabelsRef<'_> {}

impl PartialEq<Labels> for LabelsRef<'_> {
    fn eq(&self, other: &Labels) -> bool {
        *self == other.view()
    }
}

impl PartialEq<LabelsRef<'_>> for Labels {
    fn eq(&self, other: &LabelsRef<'_>) -> bool {
        self.view() == *other
    }
}

impl Hash for LabelsRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for (k, v) in self.iter() {
            k.hash(state);
            v.hash(state);
        }
    }
}

impl fmt::Debug for LabelsRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The packed values `bytes` starts with (laid out by [`PackedValues::new`]), without what
/// follows them.
pub(crate) fn packed_prefix(bytes: &[u8]) -> &[u8] {
    let word = |w: usize| -> usize {
        let b = &bytes[w * 4..w * 4 + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
    };
    let n = word(0);
    let end = if n == 0 { 0 } else { word(n) };
    &bytes[..4 + 4 * n + end]
}

/// Value `i` of bytes laid out by [`PackedValues::new`]; `""` when `i` is not below the
/// number of values packed.
fn packed_get(buf: &[u8], i: usize) -> &str {
    let word = |w: usize| -> usize {
        let b = &buf[w * 4..w * 4 + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
    };
    if buf.len() < 4 {
        return "";
    }
    let n = word(0);
    if i >= n {
        return "";
    }
    let head = 4 + n * 4;
    let start = if i == 0 { 0 } else { word(i) };
    let end = word(i + 1);
    let bytes = &buf[head + start..head + end];
    // SAFETY: every buffer this reads is the whole of one `PackedValues` (its own, or a copy
    // of it whole, in a `Snapshot` or a `Labels`: nothing else builds a `LabelsRef` or a
    // `PackedValues`); `new` copied these bytes whole from one `&str`, and the end offsets it
    // wrote mark exactly where each value starts and stops, so they are valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// Values packed into one allocation: a little-endian `u32` count `n`, `n` `u32` end offsets,
/// then the UTF-8 bytes of every value one after another.
#[derive(Clone)]
pub(crate) struct PackedValues(Arc<[u8]>);

impl PackedValues {
    pub(crate) fn new(values: &[&str]) -> Self {
        let mut buf = vec![0; packed_len(values)];
        pack_to(&mut buf, values);
        PackedValues(Arc::from(buf))
    }

    /// The whole buffer, for copying into a snapshot.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// How many bytes `values` take packed.
///
/// # Panics
/// When the values total 4 GiB or more: a wrapped offset would let `get` cut a value
/// mid-character.
pub(crate) fn packed_len(values: &[&str]) -> usize {
    let bytes = values.iter().map(|v| v.len()).sum::<usize>();
    assert!(
        u32::try_from(bytes).is_ok(),
        "the label values of one series must total under 4 GiB"
    );
    4 + values.len() * 4 + bytes
}

/// Lays `values` out in `out`, which is exactly [`packed_len`] long: a little-endian `u32`
/// count, the end offset of each value, then the bytes of every value one after another.
pub(crate) fn pack_to(out: &mut [u8], values: &[&str]) {
    let head = 4 + values.len() * 4;
    out[..4].copy_from_slice(&(values.len() as u32).to_le_bytes());
    let mut end = 0;
    for (i, v) in values.iter().enumerate() {
        let at = head + end;
        out[at..at + v.len()].copy_from_slice(v.as_bytes());
        end += v.len();
        // Below `u32::MAX`: `packed_len` checked the total.
        out[4 + i * 4..8 + i * 4].copy_from_slice(&(end as u32).to_le_bytes());
    }
}

/// Whether `buf`, laid out by [`pack_to`], holds exactly `values`, without allocating.
///
/// This runs on every family lookup, so it indexes with raw pointers after checking the
/// bounds once per value.
#[inline]
pub(crate) fn packed_matches(buf: &[u8], values: &[&str]) -> bool {
    let (len, n) = (buf.len(), values.len());
    let head = 4 + n * 4;
    if len < head {
        return false;
    }
    let base = buf.as_ptr();
    let word = |i: usize| {
        debug_assert!(i <= n);
        // SAFETY: callers pass `i <= n`, and the header of `1 + n` words (`head` bytes)
        // lies within `buf` (checked above); unaligned reads of plain bytes are fine.
        u32::from_le(unsafe { base.add(i * 4).cast::<u32>().read_unaligned() }) as usize
    };
    if word(0) != n {
        return false;
    }
    let mut pos = head;
    for i in 0..n {
        // SAFETY: `i < n == values.len()`.
        let v = unsafe { values.get_unchecked(i) }.as_bytes();
        let end = head + word(i + 1);
        if end != pos + v.len() || end > len {
            return false;
        }
        // SAFETY: `pos + v.len() == end <= len`, so the range lies within `buf`.
        let stored = unsafe { std::slice::from_raw_parts(base.add(pos), v.len()) };
        if !short_eq(stored, v) {
            return false;
        }
        pos = end;
    }
    pos == len
}

/// Equality of short byte strings by (overlapping) words, without a call to `memcmp`: label
/// values are short, and the call dominated the family lookup.
#[inline(always)]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    /// # Safety
    /// `i + 8 <= s.len()`.
    #[inline(always)]
    unsafe fn w8(s: &[u8], i: usize) -> u64 {
        // SAFETY: the caller keeps `i + 8` within `s`; unaligned reads of plain bytes are fine.
        unsafe { s.as_ptr().add(i).cast::<u64>().read_unaligned() }
    }
    /// # Safety
    /// `i + 4 <= s.len()`.
    #[inline(always)]
    unsafe fn w4(s: &[u8], i: usize) -> u32 {
        // SAFETY: as in `w8`.
        unsafe { s.as_ptr().add(i).cast::<u32>().read_unaligned() }
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        // SAFETY: `1 <= n <= 3`, both slices are `n` long, so `0`, `n / 2` and `n - 1` are in
        // bounds; together they cover every byte of a 1-, 2- or 3-byte string.
        1..=3 => unsafe {
            *a.get_unchecked(0) == *b.get_unchecked(0)
                && *a.get_unchecked(n / 2) == *b.get_unchecked(n / 2)
                && *a.get_unchecked(n - 1) == *b.get_unchecked(n - 1)
        },
        // SAFETY: `4 <= n` and both slices are `n` long.
        4..=7 => unsafe { w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4) },
        _ => {
            let mut i = 0;
            while i + 8 < n {
                // SAFETY: `i + 8 < n`, and both slices are `n` long.
                if unsafe { w8(a, i) != w8(b, i) } {
                    return false;
                }
                i += 8;
            }
            // The last word overlaps the one before it when `n` is not a multiple of 8.
            // SAFETY: `8 <= n`, and both slices are `n` long.
            unsafe { w8(a, n - 8) == w8(b, n - 8) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_roundtrip() {
        let keys: LabelKeys =
            vec![Cow::Borrowed("a"), Cow::Borrowed("b"), Cow::Borrowed("c")].into();
        for vals in [
            ["", "", ""],
            ["x", "", "yz"],
            ["é\n\"", "\\", "0123456789abcdef"],
        ] {
            let l = Labels::with_keys(keys.clone(), &vals);
            let got: Vec<&str> = l.iter().map(|(_, v)| v).collect();
            let view = l.view();
            assert_eq!(
                (0..4).map(|i| view.value(i)).collect::<Vec<_>>(),
                [vals[0], vals[1], vals[2], ""]
            );
            assert_eq!(view.to_owned(), l);
            assert_eq!(got, vals);
            let p = PackedValues::new(&vals);
            assert!(packed_matches(p.bytes(), &vals));
            assert!(!packed_matches(p.bytes(), &["x", "", "y"]));
            let mut buf = vec![7; packed_len(&vals)];
            pack_to(&mut buf, &vals);
            assert_eq!(buf, p.bytes());
        }
    }

    /// The compare a cache hit makes: equal only for the same values, in the same order, cut
    /// in the same places.
    #[test]
    fn packed_values_match_only_themselves() {
        let sets: [&[&str]; 9] = [
            &[],
            &[""],
            &["", ""],
            &["ab", "c"],
            &["a", "bc"],
            &["abc"],
            &["c", "ab"],
            &["GET", "/api/v1/items/17", "200"],
            &["GET", "/api/v1/items/71", "200"],
        ];
        for a in sets {
            let mut buf = vec![0; packed_len(a)];
            pack_to(&mut buf, a);
            for b in sets {
                assert_eq!(packed_matches(&buf, b), a == b, "{a:?} against {b:?}");
            }
            for cut in 0..buf.len() {
                assert!(!packed_matches(&buf[..cut], a), "{a:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn bad_key_rejected() {
        assert!(Labels::from_pairs(&[("Bad", "x")]).is_err());
        assert!(Labels::from_pairs(&[]).unwrap().is_empty());
    }
}
