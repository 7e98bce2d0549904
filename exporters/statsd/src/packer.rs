//! Packing points into payloads of at most `max_payload` bytes.

/// Packs points (one or more newline-separated lines that travel together) into payloads of
/// at most `max_payload` bytes, lines separated by `\n`.
///
/// A point that does not fit in the current payload starts the next one; a point longer than
/// `max_payload` on its own is dropped and counted. Every point pushed is, in the end, either
/// in exactly one payload handed to the sink or counted in [`dropped`](Self::dropped).
///
/// ```
/// use sampler_exporter_statsd::Packer;
/// let mut sent = Vec::new();
/// let mut p = Packer::new(16, false);
/// let mut sink = |payload: &[u8], points: u64| sent.push((payload.to_vec(), points));
/// p.push(b"a:1|c", &mut sink);
/// p.push(b"b:2|c", &mut sink);
/// p.push(b"c:3|c", &mut sink); // "a:1|c\nb:2|c\nc:3|c" is 17 bytes: starts a payload
/// p.push(b"much.too.long:1|c", &mut sink); // 17 bytes alone: dropped
/// p.flush(&mut sink);
/// assert_eq!(sent, [(b"a:1|c\nb:2|c".to_vec(), 2), (b"c:3|c".to_vec(), 1)]);
/// assert_eq!((p.pushed(), p.dropped()), (4, 1));
/// ```
#[derive(Debug)]
pub struct Packer {
    max_payload: usize,
    terminate: bool,
    buf: Vec<u8>,
    points: u64,
    pushed: u64,
    dropped: u64,
}

impl Packer {
    /// A packer for payloads of at most `max_payload` bytes; with `terminate` every line ends
    /// in `\n` (a stream), otherwise lines are separated by it (a datagram).
    pub fn new(max_payload: usize, terminate: bool) -> Self {
        Packer {
            max_payload,
            terminate,
            buf: Vec::with_capacity(max_payload + 1),
            points: 0,
            pushed: 0,
            dropped: 0,
        }
    }

    /// Adds one point; hands `sink` the payload it closes, with the number of points in it.
    /// Returns false when the point alone is over the limit (dropped and counted).
    pub fn push(&mut self, point: &[u8], sink: &mut impl FnMut(&[u8], u64)) -> bool {
        self.pushed += 1;
        let own = point.len() + self.terminate as usize;
        if own > self.max_payload {
            self.dropped += 1;
            return false;
        }
        let sep = (!self.buf.is_empty() && !self.terminate) as usize;
        if self.buf.len() + sep + own > self.max_payload {
            self.flush(sink);
        }
        if !self.buf.is_empty() && !self.terminate {
            self.buf.push(b'\n');
        }
        self.buf.extend_from_slice(point);
        if self.terminate {
            self.buf.push(b'\n');
        }
        self.points += 1;
        true
    }

    /// Hands `sink` the open payload, if any.
    pub fn flush(&mut self, sink: &mut impl FnMut(&[u8], u64)) {
        if self.points > 0 {
            sink(&self.buf, self.points);
        }
        self.buf.clear();
        self.points = 0;
    }

    /// Points pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Points dropped so far for being longer than `max_payload` alone.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn point() -> impl Strategy<Value = Vec<u8>> {
        // Lines of 1 to 120 bytes without newlines, sometimes two lines in one point.
        (
            proptest::collection::vec(b'!'..=b'~', 1..120),
            proptest::option::of(proptest::collection::vec(b'!'..=b'~', 1..40)),
        )
            .prop_map(|(mut a, b)| {
                if let Some(b) = b {
                    a.push(b'\n');
                    a.extend(b);
                }
                a
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The gauntlet: no payload over the limit; points in = points sent + points dropped;
        /// the payloads hold exactly the accepted points, in order, whole.
        #[test]
        fn r12_packer_gauntlet(
            max in 64usize..300,
            terminate in any::<bool>(),
            points in proptest::collection::vec(point(), 0..200),
            flush_every in 1usize..50,
        ) {
            let mut payloads: Vec<(Vec<u8>, u64)> = Vec::new();
            let mut p = Packer::new(max, terminate);
            let mut accepted = Vec::new();
            {
                let mut sink = |b: &[u8], n: u64| payloads.push((b.to_vec(), n));
                for (i, pt) in points.iter().enumerate() {
                    if p.push(pt, &mut sink) {
                        accepted.push(pt.clone());
                    } else {
                        prop_assert!(pt.len() + terminate as usize > max);
                    }
                    if i % flush_every == 0 {
                        p.flush(&mut sink);
                    }
                }
                p.flush(&mut sink);
            }
            let sent: u64 = payloads.iter().map(|x| x.1).sum();
            prop_assert_eq!(p.pushed(), points.len() as u64);
            prop_assert_eq!(p.pushed(), sent + p.dropped());
            for (b, n) in &payloads {
                prop_assert!(b.len() <= max, "payload of {} bytes over {}", b.len(), max);
                prop_assert!(*n > 0 && !b.is_empty());
            }
            // Whole points, in order: joining the payloads gives the accepted points back.
            let mut joined = Vec::new();
            for (b, _) in &payloads {
                joined.extend_from_slice(b);
                if !terminate { joined.push(b'\n'); }
            }
            let mut want = Vec::new();
            for a in &accepted { want.extend_from_slice(a); want.push(b'\n'); }
            prop_assert_eq!(joined, want);
        }
    }
}
