//! A sample line written at once: `name{labels} value` and a newline, with one reservation and
//! short copies by words. Written piece by piece, each piece's `extend_from_slice` was a call
//! to `memcpy` and each pushed byte a capacity check: a sixth of a counter family's encoding
//! went to `memcpy` alone.

/// Appends `name`, then `{list}` (nothing when `list` is empty), a space, `value` and a
/// newline: what `extend_from_slice` of each piece in turn appends.
#[inline(always)]
pub(super) fn sample_line(out: &mut Vec<u8>, name: &[u8], list: &[u8], value: &[u8]) {
    let n = name.len() + list.len() + value.len() + 4;
    out.reserve(n);
    let at = out.len();
    // SAFETY: `reserve` made room for `n` bytes past `at`; the writes below are exactly
    // `name`, two braces if `list` is not empty, `list`, a space, `value` and a newline: at
    // most `n` bytes, each `put` writing only within its source's length (see `put`). The
    // sources are shared borrows, so none lies in `out`'s buffer, which `out` borrows
    // mutably. `set_len` covers exactly the bytes written.
    unsafe {
        let start = out.as_mut_ptr().add(at);
        let mut p = put(start, name);
        if !list.is_empty() {
            *p = b'{';
            p = put(p.add(1), list);
            *p = b'}';
            p = p.add(1);
        }
        *p = b' ';
        p = put(p.add(1), value);
        *p = b'\n';
        let written = p.add(1).offset_from(start) as usize;
        out.set_len(at + written);
    }
}

/// Copies `src` to `dst` and returns the end of the copy: by (overlapping) words for short
/// strings, by `copy_nonoverlapping` past 64 bytes.
///
/// # Safety
/// `dst` is valid for `src.len()` bytes of writes and does not overlap `src`.
#[inline(always)]
unsafe fn put(dst: *mut u8, src: &[u8]) -> *mut u8 {
    let n = src.len();
    let s = src.as_ptr();
    // SAFETY: every read lies within `src` (words end at or before `n`), every write within
    // the `n` bytes of `dst` the caller vouches for, and the two do not overlap.
    unsafe {
        if n > 64 {
            std::ptr::copy_nonoverlapping(s, dst, n);
        } else if n >= 8 {
            let mut i = 0;
            while i + 8 < n {
                dst.add(i)
                    .cast::<u64>()
                    .write_unaligned(s.add(i).cast::<u64>().read_unaligned());
                i += 8;
            }
            // The last word overlaps the one before it when `n` is not a multiple of 8.
            dst.add(n - 8)
                .cast::<u64>()
                .write_unaligned(s.add(n - 8).cast::<u64>().read_unaligned());
        } else if n >= 4 {
            dst.cast::<u32>()
                .write_unaligned(s.cast::<u32>().read_unaligned());
            dst.add(n - 4)
                .cast::<u32>()
                .write_unaligned(s.add(n - 4).cast::<u32>().read_unaligned());
        } else {
            for i in 0..n {
                *dst.add(i) = *s.add(i);
            }
        }
        dst.add(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same bytes as the pieces appended one by one, at every length of each piece around
    /// the word sizes and the cut-off, onto buffers with and without room (`scripts/test.sh`
    /// runs this under memcheck too).
    #[test]
    fn a_line_is_its_pieces_appended_in_turn() {
        let src: Vec<u8> = (0..300u32).map(|i| (i * 31 + 7) as u8).collect();
        let lens = [
            0usize, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 100,
        ];
        for &a in &lens {
            for &b in &lens {
                for &c in &[0usize, 1, 3, 4, 8, 20] {
                    let (name, list, value) = (&src[..a], &src[100..100 + b], &src[250..250 + c]);
                    let mut want = b"prefix".to_vec();
                    want.extend_from_slice(name);
                    if !list.is_empty() {
                        want.push(b'{');
                        want.extend_from_slice(list);
                        want.push(b'}');
                    }
                    want.push(b' ');
                    want.extend_from_slice(value);
                    want.push(b'\n');
                    let mut tight = b"prefix".to_vec();
                    tight.shrink_to_fit();
                    sample_line(&mut tight, name, list, value);
                    assert_eq!(tight, want, "{a} {b} {c}");
                    let mut roomy = Vec::with_capacity(1024);
                    roomy.extend_from_slice(b"prefix");
                    sample_line(&mut roomy, name, list, value);
                    assert_eq!(roomy, want, "{a} {b} {c}, with room");
                }
            }
        }
    }
}
