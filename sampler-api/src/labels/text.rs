//! One label value in an allocation of its own, as a family keeps each distinct value once
//! (`instruments::family::table`), and the thin pointer a snapshot names it by.

use std::ptr::NonNull;

/// A label value: a little-endian `u32` length, then the value's UTF-8 bytes, in one
/// allocation that never moves or changes while the `Text` lives.
pub(crate) struct Text(Box<[u8]>);

impl Text {
    /// # Panics
    /// When `value` is 4 GiB or longer.
    pub(crate) fn new(value: &str) -> Self {
        let len = u32::try_from(value.len()).expect("a label value must be under 4 GiB");
        let mut buf = Vec::with_capacity(4 + value.len());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(value.as_bytes());
        Text(buf.into_boxed_slice())
    }

    pub(crate) fn as_str(&self) -> &str {
        // SAFETY: `new` copied these bytes whole from one `&str`, after the 4-byte length.
        unsafe { std::str::from_utf8_unchecked(&self.0[4..]) }
    }

    /// Where this text is: valid for as long as this `Text` lives. Made from the whole buffer
    /// (not its first byte), so that reads through it may cover every byte of it.
    pub(crate) fn ptr(&self) -> TextPtr {
        TextPtr(NonNull::from(&*self.0).cast::<u8>())
    }
}

/// Where a [`Text`] is. Reading it ([`get`](Self::get)) is sound only while that `Text` lives:
/// a snapshot's block holds the `Keep` that keeps the texts it names (`snapshot::keep`).
#[derive(Clone, Copy)]
pub(crate) struct TextPtr(NonNull<u8>);

// SAFETY: a `TextPtr` only ever reads the immutable bytes of a `Text` (a `Box<[u8]>`, which is
// `Send` and `Sync`); who reads it when is governed by `get`'s contract.
unsafe impl Send for TextPtr {}
// SAFETY: as above.
unsafe impl Sync for TextPtr {}

impl TextPtr {
    /// The value.
    ///
    /// # Safety
    /// The `Text` this points at lives (and so stays unchanged) for `'a`.
    #[inline]
    pub(crate) unsafe fn get<'a>(self) -> &'a str {
        let p = self.0.as_ptr();
        // SAFETY: a `Text`'s buffer starts with its length as 4 bytes, followed by that many
        // bytes of UTF-8 copied from one `&str` (`Text::new`); the caller keeps it alive for
        // `'a`. The length is read unaligned: the buffer is a byte slice.
        unsafe {
            let len = u32::from_le(p.cast::<u32>().read_unaligned()) as usize;
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(p.add(4), len))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_reads_back_through_its_pointer() {
        for v in ["", "x", "é\n\"", &"0123456789".repeat(30)] {
            let t = Text::new(v);
            assert_eq!(t.as_str(), v);
            // SAFETY: `t` lives until the end of the loop body.
            assert_eq!(unsafe { t.ptr().get() }, v);
        }
    }
}
