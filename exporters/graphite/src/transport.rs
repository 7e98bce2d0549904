//! Getting bytes to the backend: the bounded send buffer, the TCP connection with its
//! reconnect backoff, and UDP datagram packing.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

/// One harvest's bytes, kept until the backend's TCP has acknowledged all of them.
#[derive(Debug)]
struct Batch {
    bytes: Vec<u8>,
    points: u64,
}

/// What a call to the link did, for self-metrics and events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Points the backend acknowledged (TCP) or that went out (UDP).
    pub sent: u64,
    /// Points dropped: oldest harvests pushed out of a full buffer.
    pub dropped: u64,
    /// UDP points that could not be sent: lines too long for a datagram, failed sends.
    pub unsendable: u64,
    /// Connections made.
    pub connects: u64,
    /// Connection attempts, writes and sends that failed.
    pub failures: u64,
}

/// The exponential backoff with jitter between connection attempts: after `n` failures in a
/// row the wait is `min(max, initial · 2^(n-1))`, times a random factor in `[0.5, 1]` (the
/// push exporters' shared [`sampler_push_support::Backoff`]).
pub use sampler_push_support::Backoff;

/// How a host name becomes addresses; the system's resolver unless a test swaps it.
pub(crate) type Resolve = Box<dyn FnMut(&str) -> io::Result<Vec<SocketAddr>> + Send>;

fn system_resolve() -> Resolve {
    Box::new(|a: &str| a.to_socket_addrs().map(|i| i.collect()))
}

/// Resolves `address` (again on every call: a moved backend is found at its new address)
/// and connects to the first address that answers within `timeout`.
fn connect(resolve: &mut Resolve, address: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in resolve(address)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address")
    }))
}

/// The TCP side: a bounded buffer of harvests and one persistent connection.
///
/// The buffer holds every harvest not yet acknowledged by the backend's TCP (`SIOCOUTQ` on
/// Linux; elsewhere, written counts as acknowledged). After a failure the connection is
/// dropped and, on the next one, every harvest still held is sent again from its start, in
/// order. Graphite keeps one value per path and second, so a harvest sent twice stores the
/// same points.
pub(crate) struct TcpLink {
    address: String,
    connect_timeout: Duration,
    write_timeout: Duration,
    bound: usize,
    batches: VecDeque<Batch>,
    bytes: usize,
    conn: Option<Conn>,
    backoff: Backoff,
    next_attempt: Option<Instant>,
    /// Why the last attempt failed, while no connection is up.
    last_error: Option<String>,
    resolve: Resolve,
}

impl std::fmt::Debug for TcpLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpLink")
            .field("address", &self.address)
            .field("buffered", &self.bytes)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// Bytes of the buffer (from the front batch's start) written on this connection.
    written: usize,
    /// Bytes written on this connection before the front batch.
    front_at: u64,
    /// Bytes written on this connection in all.
    total: u64,
}

impl TcpLink {
    pub(crate) fn new(
        address: String,
        bound: usize,
        connect_timeout: Duration,
        write_timeout: Duration,
        backoff: Backoff,
    ) -> Self {
        TcpLink {
            address,
            connect_timeout,
            write_timeout,
            bound,
            batches: VecDeque::new(),
            bytes: 0,
            conn: None,
            backoff,
            next_attempt: None,
            last_error: None,
            resolve: system_resolve(),
        }
    }

    /// Bytes held in the buffer.
    pub(crate) fn buffered(&self) -> usize {
        self.bytes
    }

    /// Harvests held in the buffer.
    pub(crate) fn batches(&self) -> usize {
        self.batches.len()
    }

    pub(crate) fn connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Adds one harvest, dropping the oldest while the buffer would go over its bound (a
    /// harvest larger than the bound on its own is dropped whole).
    pub(crate) fn push(&mut self, bytes: Vec<u8>, points: u64, p: &mut Progress) {
        if bytes.is_empty() {
            return;
        }
        if bytes.len() > self.bound {
            p.dropped += points;
            return;
        }
        while self.bytes + bytes.len() > self.bound {
            let Some(old) = self.batches.pop_front() else {
                break;
            };
            self.bytes -= old.bytes.len();
            p.dropped += old.points;
            if let Some(c) = &mut self.conn {
                if c.written >= old.bytes.len() {
                    c.written -= old.bytes.len();
                    c.front_at += old.bytes.len() as u64;
                } else if c.written > 0 {
                    // Part of it is on the wire: the rest cannot be skipped on this connection.
                    self.conn = None;
                }
            }
        }
        self.bytes += bytes.len();
        self.batches.push_back(Batch { bytes, points });
    }

    /// Releases the harvests the backend has acknowledged; fails when the connection is
    /// closed or broken.
    fn confirm(&mut self, p: &mut Progress) -> io::Result<()> {
        let Some(c) = &mut self.conn else {
            return Ok(());
        };
        // A Graphite backend never sends: readable means closed (or a reset), unless it
        // did send something, which is read and ignored.
        c.stream.set_nonblocking(true)?;
        let mut scratch = [0u8; 512];
        let health = loop {
            match c.stream.read(&mut scratch) {
                Ok(0) => {
                    break Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "connection closed by the backend",
                    ))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        c.stream.set_nonblocking(false)?;
        health?;
        let acked = c.total - unacknowledged(&c.stream)?.min(c.total);
        while let Some(front) = self.batches.front() {
            let len = front.bytes.len();
            if c.written < len || c.front_at + len as u64 > acked {
                break;
            }
            p.sent += front.points;
            self.bytes -= len;
            c.written -= len;
            c.front_at += len as u64;
            self.batches.pop_front();
        }
        Ok(())
    }

    /// Connects when it is time to (or `force`), then writes what the buffer holds, giving up
    /// at `deadline`. `Ok(true)` when everything was written; an error while no connection is
    /// up (also while waiting out the backoff, then the last attempt's error).
    pub(crate) fn send(
        &mut self,
        deadline: Instant,
        force: bool,
        p: &mut Progress,
    ) -> Result<bool, String> {
        if let Err(e) = self.confirm(p) {
            return Err(self.fail(
                p,
                format!("lost the connection to graphite at {}: {e}", self.address),
            ));
        }
        if self.conn.is_none() {
            let now = Instant::now();
            let waiting = !force && self.next_attempt.is_some_and(|t| now < t);
            let left = deadline.saturating_duration_since(now);
            if waiting || left.is_zero() {
                return match &self.last_error {
                    Some(e) if !self.batches.is_empty() => Err(e.clone()),
                    _ => Ok(self.batches.is_empty()),
                };
            }
            match connect(
                &mut self.resolve,
                &self.address,
                self.connect_timeout.min(left),
            ) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    p.connects += 1;
                    self.next_attempt = None;
                    self.last_error = None;
                    self.conn = Some(Conn {
                        stream,
                        written: 0,
                        front_at: 0,
                        total: 0,
                    });
                }
                Err(e) => {
                    return Err(self.fail(
                        p,
                        format!("failed to connect to graphite at {}: {e}", self.address),
                    ));
                }
            }
        }
        match self.write_all(deadline) {
            Ok(done) => {
                if done {
                    self.backoff.succeeded();
                }
                let _ = self.confirm(p);
                Ok(done)
            }
            Err(e) => Err(self.fail(
                p,
                format!("failed to write to graphite at {}: {e}", self.address),
            )),
        }
    }

    /// Drops the connection, schedules the next attempt and keeps the error.
    fn fail(&mut self, p: &mut Progress, error: String) -> String {
        self.conn = None;
        p.failures += 1;
        self.next_attempt = Some(Instant::now() + self.backoff.failed());
        self.last_error = Some(error.clone());
        error
    }

    /// Writes the unwritten part of the buffer; `Ok(false)` when the deadline came first.
    fn write_all(&mut self, deadline: Instant) -> io::Result<bool> {
        let Some(c) = &mut self.conn else {
            return Ok(false);
        };
        let mut skip = c.written;
        for b in &self.batches {
            if skip >= b.bytes.len() {
                skip -= b.bytes.len();
                continue;
            }
            let mut rest = &b.bytes[skip..];
            skip = 0;
            while !rest.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                c.stream
                    .set_write_timeout(Some(self.write_timeout.min(left)))?;
                match c.stream.write(rest) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        rest = &rest[n..];
                        c.written += n;
                        c.total += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        if Instant::now() >= deadline {
                            return Ok(false);
                        }
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "the backend took no data for {:?}",
                                self.write_timeout.min(left)
                            ),
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(true)
    }

    /// Waits (polling) until the backend has acknowledged everything written, or `deadline`.
    pub(crate) fn drain(&mut self, deadline: Instant, p: &mut Progress) -> bool {
        loop {
            if self.confirm(p).is_err() {
                self.conn = None;
                return false;
            }
            if self.batches.is_empty() {
                return true;
            }
            if self.conn.is_none() || Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Closes the connection (what was written is still delivered by the system).
    pub(crate) fn close(&mut self) {
        self.conn = None;
    }
}

/// Bytes written to `stream` that its peer has not acknowledged yet.
#[cfg(target_os = "linux")]
fn unacknowledged(stream: &TcpStream) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: `stream` owns an open socket for the whole call; SIOCOUTQ (= TIOCOUTQ) writes
    // one c_int through the pointer, which points at `n`, alive and aligned.
    let r = unsafe {
        libc::ioctl(
            stream.as_raw_fd(),
            libc::TIOCOUTQ,
            &mut n as *mut libc::c_int,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as u64)
}

#[cfg(not(target_os = "linux"))]
fn unacknowledged(_stream: &TcpStream) -> io::Result<u64> {
    Ok(0)
}

/// G12, UDP packing: whole lines into datagrams of at most `max` bytes, in order; a line
/// longer than `max` on its own is dropped. Calls `send` once per datagram and returns the
/// lines dropped.
///
/// ```
/// use sampler_exporter_graphite::pack_datagrams;
/// let mut d = Vec::new();
/// let dropped = pack_datagrams(b"a 1 0\nb 2 0\nccccccccc 3 0\n", 12, |g| d.push(g.to_vec()));
/// assert_eq!(d, vec![b"a 1 0\nb 2 0\n".to_vec()]);
/// assert_eq!(dropped, 1);
/// ```
pub fn pack_datagrams(lines: &[u8], max: usize, mut send: impl FnMut(&[u8])) -> u64 {
    let mut dropped = 0;
    let mut start = 0;
    let mut end = 0;
    for line in lines.split_inclusive(|b| *b == b'\n') {
        if line.len() > max {
            if end > start {
                send(&lines[start..end]);
            }
            dropped += 1;
            end += line.len();
            start = end;
            continue;
        }
        if end + line.len() - start > max {
            send(&lines[start..end]);
            start = end;
        }
        end += line.len();
    }
    if end > start {
        send(&lines[start..end]);
    }
    dropped
}

/// The UDP side: a socket, and the address resolved again at every harvest.
#[derive(Debug)]
pub(crate) struct UdpLink {
    address: String,
    max: usize,
    socket: Option<(UdpSocket, SocketAddr)>,
}

impl UdpLink {
    pub(crate) fn new(address: String, max: usize) -> Self {
        UdpLink {
            address,
            max,
            socket: None,
        }
    }

    /// Sends one harvest's lines; returns what went out and what was dropped, or the error
    /// that stopped it (its lines counted as dropped).
    pub(crate) fn send(
        &mut self,
        lines: &[u8],
        points: u64,
        p: &mut Progress,
    ) -> Result<(), String> {
        let addr = match self.address.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            Ok(None) => {
                p.unsendable += points;
                return Err(format!(
                    "failed to resolve graphite address {}: no address",
                    self.address
                ));
            }
            Err(e) => {
                p.unsendable += points;
                return Err(format!(
                    "failed to resolve graphite address {}: {e}",
                    self.address
                ));
            }
        };
        if self
            .socket
            .as_ref()
            .map_or(true, |(_, a)| a.is_ipv4() != addr.is_ipv4())
        {
            let bind = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            match UdpSocket::bind(bind) {
                Ok(s) => {
                    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                    self.socket = Some((s, addr));
                }
                Err(e) => {
                    p.unsendable += points;
                    return Err(format!(
                        "failed to open a udp socket for graphite at {}: {e}",
                        self.address
                    ));
                }
            }
        }
        let Some((socket, to)) = &mut self.socket else {
            return Ok(());
        };
        *to = addr;
        let mut error = None;
        let mut lost = 0u64;
        let too_long = pack_datagrams(lines, self.max, |d| {
            if let Err(e) = socket.send_to(d, addr) {
                lost += d.iter().filter(|b| **b == b'\n').count() as u64;
                error.get_or_insert(e);
            }
        });
        p.unsendable += lost + too_long;
        p.sent += points.saturating_sub(lost + too_long);
        match error {
            Some(e) => Err(format!(
                "failed to send to graphite at {} over udp: {e}",
                self.address
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The packing gauntlet: no datagram over the limit, each ends on a line end, lines
        /// keep their order, and lines in = lines sent + lines dropped.
        #[test]
        fn packing_keeps_every_line_or_counts_it(
            lens in prop::collection::vec(0usize..120, 0..200),
            max in 64usize..300,
        ) {
            let mut text = Vec::new();
            for (i, l) in lens.iter().enumerate() {
                text.extend(format!("{i}:").bytes());
                text.extend(std::iter::repeat(b'x').take(*l));
                text.push(b'\n');
            }
            let mut got: Vec<Vec<u8>> = Vec::new();
            let dropped = pack_datagrams(&text, max, |d| got.push(d.to_vec()));
            let mut sent = Vec::new();
            for d in &got {
                prop_assert!(d.len() <= max && !d.is_empty());
                prop_assert_eq!(d.last(), Some(&b'\n'));
                sent.extend(d.split_inclusive(|b| *b == b'\n').map(|l| l.to_vec()));
            }
            let all: Vec<Vec<u8>> = text.split_inclusive(|b| *b == b'\n').map(|l| l.to_vec()).collect();
            prop_assert_eq!(sent.len() as u64 + dropped, all.len() as u64);
            let kept: Vec<Vec<u8>> = all.into_iter().filter(|l| l.len() <= max).collect();
            prop_assert_eq!(sent, kept);
        }
    }

    /// A backend that moved (its name now resolves elsewhere) is found at the next attempt:
    /// the name is resolved again for every connection, never cached.
    #[test]
    fn r12_every_connection_attempt_resolves_the_name_again() {
        use std::net::TcpListener;
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use std::sync::Arc;
        let old = TcpListener::bind("127.0.0.1:0").unwrap();
        let old_addr = old.local_addr().unwrap();
        drop(old); // the old address refuses from now on
        let new = TcpListener::bind("127.0.0.1:0").unwrap();
        let new_addr = new.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let mut link = TcpLink::new(
            "graphite.example:2003".into(),
            1000,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Backoff::new(Duration::from_millis(1), Duration::from_millis(1)),
        );
        link.resolve = Box::new(move |name| {
            assert_eq!(name, "graphite.example:2003");
            // The first lookup gives the old address, every later one the new.
            Ok(vec![if c.fetch_add(1, SeqCst) == 0 {
                old_addr
            } else {
                new_addr
            }])
        });
        let mut p = Progress::default();
        link.push(b"a 1 0\n".to_vec(), 1, &mut p);
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = link.send(deadline, true, &mut p).unwrap_err();
        assert!(
            err.starts_with("failed to connect to graphite at graphite.example:2003: "),
            "{err}"
        );
        assert_eq!(link.send(deadline, true, &mut p), Ok(true));
        assert_eq!(calls.load(SeqCst), 2);
        let (mut s, _) = new.accept().unwrap();
        let mut got = [0u8; 6];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"a 1 0\n");
        // Each later connection resolves again too.
        link.close();
        assert_eq!(link.send(deadline, true, &mut p), Ok(true));
        assert_eq!(calls.load(SeqCst), 3);
    }

    proptest! {
        /// After n failures in a row the wait is min(max, initial·2^(n-1)) times a factor in
        /// [0.5, 1]; a success starts again from initial.
        #[test]
        fn backoff_doubles_up_to_its_cap_with_jitter(
            initial_ms in 1u64..2000,
            extra_ms in 0u64..60_000,
            failures in 1usize..80,
        ) {
            let initial = Duration::from_millis(initial_ms);
            let max = initial + Duration::from_millis(extra_ms);
            let mut b = Backoff::new(initial, max);
            for n in 0..failures {
                let full = initial.saturating_mul(1u32 << n.min(31)).min(max);
                let w = b.failed();
                prop_assert!(w <= full && w >= full / 2, "wait {:?} after {} failures, full {:?}", w, n + 1, full);
            }
            b.succeeded();
            let w = b.failed();
            prop_assert!(w <= initial && w >= initial / 2);
        }
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_harvest() {
        let mut link = TcpLink::new(
            "127.0.0.1:1".into(),
            10,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
        );
        let mut p = Progress::default();
        link.push(b"aaaa".to_vec(), 1, &mut p);
        link.push(b"bbbb".to_vec(), 2, &mut p);
        link.push(b"cccc".to_vec(), 3, &mut p);
        assert_eq!((link.buffered(), link.batches(), p.dropped), (8, 2, 1));
        link.push(vec![b'x'; 11], 4, &mut p);
        assert_eq!((link.buffered(), p.dropped), (8, 5));
    }
}
