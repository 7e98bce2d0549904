//! G10, carbon's pickle protocol: frames of a 4-byte big-endian length (`!L`) and a pickle
//! (protocol 2) of `[(path, (timestamp, value)), …]`.
//!
//! Only the opcodes that list needs are written: `PROTO 2`, `EMPTY_LIST`, `MARK`, `APPENDS`,
//! `BINUNICODE` for paths, `BININT`/`LONG1` for integers, `BINFLOAT` for floats, `TUPLE2` and
//! `STOP` (opcode meanings: CPython's `Lib/pickletools.py`). No globals, so carbon's safe
//! unpickler accepts it.

use crate::mapping::Num;

/// Points per frame: carbon refuses frames over 1 MiB (`MAX_LENGTH = 2 ** 20`), and 500 points
/// of paths up to 2000 bytes stay well under it.
pub const POINTS_PER_FRAME: usize = 500;

const PROTO: u8 = 0x80;
const EMPTY_LIST: u8 = b']';
const MARK: u8 = b'(';
const APPENDS: u8 = b'e';
const BINUNICODE: u8 = b'X';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const TUPLE2: u8 = 0x86;
const STOP: u8 = b'.';

/// Builds pickle frames, [`POINTS_PER_FRAME`] points at most in each.
///
/// ```
/// use sampler_exporter_graphite::mapping::Num;
/// use sampler_exporter_graphite::pickle::FrameWriter;
/// let mut out = Vec::new();
/// let mut w = FrameWriter::default();
/// w.point(&mut out, "a.b", Num::Int(3), 1700000000);
/// w.finish(&mut out);
/// let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
/// assert_eq!(len, out.len() - 4);
/// assert_eq!(&out[4..7], b"\x80\x02]");
/// ```
#[derive(Debug, Default)]
pub struct FrameWriter {
    /// Where the open frame starts in the output, and its points.
    open: Option<(usize, usize)>,
}

impl FrameWriter {
    /// Appends one point, opening a frame (and closing a full one) as needed.
    pub fn point(&mut self, out: &mut Vec<u8>, path: &str, value: Num, timestamp: u64) {
        if let Some((_, n)) = self.open {
            if n >= POINTS_PER_FRAME {
                self.finish(out);
            }
        }
        let (start, n) = *self.open.get_or_insert_with(|| {
            let start = out.len();
            out.extend_from_slice(&[0, 0, 0, 0, PROTO, 2, EMPTY_LIST, MARK]);
            (start, 0)
        });
        out.push(BINUNICODE);
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        int(out, timestamp);
        match value {
            Num::Int(i) => int(out, i),
            Num::Float(f) => {
                out.push(BINFLOAT);
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
        out.extend_from_slice(&[TUPLE2, TUPLE2]);
        self.open = Some((start, n + 1));
    }

    /// Closes the open frame, if any, and writes its length.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some((start, _)) = self.open.take() {
            out.extend_from_slice(&[APPENDS, STOP]);
            let len = (out.len() - start - 4) as u32;
            out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
}

/// An unsigned integer: `BININT` (4-byte signed little-endian) when it fits, else `LONG1`
/// with 9 little-endian two's-complement bytes (the top one 0, so it reads as positive).
fn int(out: &mut Vec<u8>, v: u64) {
    if v <= i32::MAX as u64 {
        out.push(BININT);
        out.extend_from_slice(&(v as i32).to_le_bytes());
    } else {
        out.extend_from_slice(&[LONG1, 9]);
        out.extend_from_slice(&v.to_le_bytes());
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader for exactly the opcodes above, so the writer is checked against the opcode
    /// definitions here; the interop tests check it against Python's and carbon's unpickler.
    fn read(frame: &[u8]) -> Vec<(String, u64, f64)> {
        let mut i = 0;
        let take = |i: &mut usize, n: usize| {
            let s = &frame[*i..*i + n];
            *i += n;
            s
        };
        assert_eq!(take(&mut i, 4), [PROTO, 2, EMPTY_LIST, MARK]);
        let mut stack: Vec<(String, u64, f64)> = Vec::new();
        loop {
            match take(&mut i, 1)[0] {
                BINUNICODE => {
                    let n = u32::from_le_bytes(take(&mut i, 4).try_into().unwrap()) as usize;
                    let path = String::from_utf8(take(&mut i, n).to_vec()).unwrap();
                    let ts = read_int(&mut i, frame) as u64;
                    let v = match frame[i] {
                        BINFLOAT => {
                            i += 1;
                            f64::from_be_bytes(take(&mut i, 8).try_into().unwrap())
                        }
                        _ => read_int(&mut i, frame) as f64,
                    };
                    assert_eq!(take(&mut i, 2), [TUPLE2, TUPLE2]);
                    stack.push((path, ts, v));
                }
                APPENDS => {
                    assert_eq!(take(&mut i, 1), [STOP]);
                    assert_eq!(i, frame.len());
                    return stack;
                }
                op => panic!("unexpected opcode {op:#x}"),
            }
        }
    }

    fn read_int(i: &mut usize, frame: &[u8]) -> i128 {
        match frame[*i] {
            BININT => {
                let v = i32::from_le_bytes(frame[*i + 1..*i + 5].try_into().unwrap());
                *i += 5;
                v as i128
            }
            LONG1 => {
                assert_eq!(frame[*i + 1], 9);
                let mut b = [0u8; 16];
                b[..9].copy_from_slice(&frame[*i + 2..*i + 11]);
                *i += 11;
                i128::from_le_bytes(b)
            }
            op => panic!("unexpected int opcode {op:#x}"),
        }
    }

    #[test]
    fn frames_split_at_the_point_limit_and_carry_their_length() {
        let mut out = Vec::new();
        let mut w = FrameWriter::default();
        for k in 0..(POINTS_PER_FRAME as u64 + 3) {
            w.point(
                &mut out,
                &format!("a.é{k}"),
                Num::Int(k << 33),
                1_700_000_000 + k,
            );
        }
        w.point(&mut out, "f", Num::Float(-0.5), u32::MAX as u64);
        w.finish(&mut out);
        w.finish(&mut out); // nothing open: writes nothing
        let mut frames = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            frames.push(read(&rest[4..4 + n]));
            rest = &rest[4 + n..];
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].len(), POINTS_PER_FRAME);
        assert_eq!(frames[1].len(), 4);
        assert_eq!(
            frames[0][7],
            ("a.é7".to_owned(), 1_700_000_007, (7u64 << 33) as f64)
        );
        assert_eq!(frames[1][3], ("f".to_owned(), u32::MAX as u64, -0.5));
    }
}
