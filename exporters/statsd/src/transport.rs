//! The way to the daemon: a UDP or Unix datagram socket, or a TCP connection, owned by the
//! exporter's worker; the address looked up again every `resolve_every`, TCP reconnected
//! with exponential backoff and jitter (`sampler_push_support::Backoff`).

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
#[cfg(unix)]
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use sampler_push_support::Backoff;

use crate::config::Transport;

/// The first wait before a TCP reconnect; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between TCP reconnects.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a TCP connect or write may block the exporter's worker.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a send on a Unix datagram socket whose reader is behind may block; then the rest
/// of that harvest's payloads are dropped and counted.
pub const UNIX_TIMEOUT: Duration = Duration::from_millis(500);

enum Conn {
    None,
    Udp(UdpSocket),
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixDatagram),
}

/// The exporter's end of the way to the daemon.
pub(crate) struct Sender {
    transport: Transport,
    address: String,
    resolve_every: Duration,
    resolved_at: Option<Instant>,
    target: Option<SocketAddr>,
    conn: Conn,
    backoff: Backoff,
}

impl Sender {
    pub(crate) fn new(transport: Transport, address: &str, resolve_every: Duration) -> Self {
        Sender {
            transport,
            address: address
                .strip_prefix("unix://")
                .unwrap_or(address)
                .to_owned(),
            resolve_every,
            resolved_at: None,
            target: None,
            conn: Conn::None,
            backoff: Backoff::new(MIN_BACKOFF, MAX_BACKOFF),
        }
    }

    /// Where the lines go, for messages: the address and what it resolved to.
    pub(crate) fn describe(&self) -> String {
        match self.target {
            Some(t) if t.to_string() != self.address => format!("{} ({t})", self.address),
            _ => self.address.clone(),
        }
    }

    fn resolve(&mut self, now: Instant) -> io::Result<SocketAddr> {
        self.resolved_at = Some(now);
        let found = self.address.to_socket_addrs().and_then(|mut a| {
            a.next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address found"))
        });
        match found {
            Ok(a) => {
                self.target = Some(a);
                Ok(a)
            }
            // A failed look-up keeps the last good address.
            Err(e) => self.target.ok_or(e),
        }
    }

    /// Makes the way ready for this harvest's payloads: looks the address up again when due,
    /// (re)connects when needed. An error means this harvest's payloads cannot go.
    pub(crate) fn prepare(&mut self, now: Instant) -> io::Result<()> {
        let due = self
            .resolved_at
            .map_or(true, |t| now.duration_since(t) >= self.resolve_every);
        match self.transport {
            Transport::Udp => {
                if due || matches!(self.conn, Conn::None) {
                    let before = self.target;
                    let target = self.resolve(now)?;
                    let same_family = match &self.conn {
                        Conn::Udp(s) => s
                            .local_addr()
                            .map(|l| l.is_ipv4() == target.is_ipv4())
                            .unwrap_or(false),
                        _ => false,
                    };
                    if !same_family {
                        let bind: SocketAddr = if target.is_ipv4() {
                            ([0, 0, 0, 0], 0).into()
                        } else {
                            ([0u16; 8], 0).into()
                        };
                        let s = UdpSocket::bind(bind)?;
                        s.connect(target)?;
                        self.conn = Conn::Udp(s);
                    } else if before != Some(target) {
                        if let Conn::Udp(s) = &self.conn {
                            s.connect(target)?;
                        }
                    }
                }
                Ok(())
            }
            Transport::Tcp => {
                if matches!(self.conn, Conn::Tcp(_)) {
                    return Ok(());
                }
                if !self.backoff.ready(now) {
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "not connected (waiting to reconnect)",
                    ));
                }
                // Every reconnect looks the name up again: the daemon may have moved.
                let connected = self.resolve(now).and_then(|t| {
                    let s = TcpStream::connect_timeout(&t, TCP_TIMEOUT)?;
                    s.set_write_timeout(Some(TCP_TIMEOUT))?;
                    s.set_nodelay(true)?;
                    Ok(s)
                });
                match connected {
                    Ok(s) => {
                        self.conn = Conn::Tcp(s);
                        self.backoff.succeeded();
                        Ok(())
                    }
                    Err(e) => {
                        self.backoff.failed_at(now);
                        Err(e)
                    }
                }
            }
            Transport::Unix => {
                #[cfg(unix)]
                {
                    if due || matches!(self.conn, Conn::None) {
                        self.resolved_at = Some(now);
                        let s = UnixDatagram::unbound()?;
                        // A full receive queue blocks a Unix datagram send (unlike UDP, which
                        // drops): wait briefly, then drop.
                        s.set_write_timeout(Some(UNIX_TIMEOUT))?;
                        s.connect(&self.address)?;
                        self.conn = Conn::Unix(s);
                    }
                    Ok(())
                }
                #[cfg(not(unix))]
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "unix sockets need a unix system",
                ))
            }
        }
    }

    /// Sends one payload (one datagram; over TCP one write of whole lines).
    pub(crate) fn send(&mut self, payload: &[u8], now: Instant) -> io::Result<()> {
        let r = match &mut self.conn {
            Conn::None => Err(io::Error::new(io::ErrorKind::NotConnected, "not connected")),
            Conn::Udp(s) => s.send(payload).map(|_| ()),
            Conn::Tcp(s) => s.write_all(payload),
            #[cfg(unix)]
            Conn::Unix(s) => s.send(payload).map(|_| ()),
        };
        if r.is_err() {
            match self.conn {
                Conn::Tcp(_) => {
                    self.conn = Conn::None;
                    self.backoff.failed_at(now);
                }
                // A datagram socket stays; a vanished Unix socket path is connected again at
                // the next harvest.
                #[cfg(unix)]
                Conn::Unix(_) => self.conn = Conn::None,
                _ => {}
            }
        }
        r
    }

    /// Whether the next payloads of this harvest can still go (a broken TCP connection waits
    /// for the next harvest).
    pub(crate) fn usable(&self) -> bool {
        !matches!(self.conn, Conn::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
        let now = Instant::now();
        assert!(b.ready(now));
        let mut caps = Vec::new();
        for _ in 0..12 {
            caps.push(b.failed_at(now));
        }
        assert!(caps[0] >= MIN_BACKOFF / 2 && caps[0] <= MIN_BACKOFF);
        assert!(caps[3] >= MIN_BACKOFF * 4 && caps[3] <= MIN_BACKOFF * 8);
        assert!(caps.iter().all(|c| *c <= MAX_BACKOFF));
        assert!(caps[11] >= MAX_BACKOFF / 2);
        assert!(!b.ready(now));
        b.succeeded();
        assert!(b.ready(now));
    }

    #[test]
    fn udp_follows_a_moved_daemon_after_resolve_every() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        let mut sender = Sender::new(
            Transport::Udp,
            &a.local_addr().unwrap().to_string(),
            Duration::from_secs(60),
        );
        let t0 = Instant::now();
        sender.prepare(t0).unwrap();
        sender.send(b"x:1|c", t0).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(a.recv(&mut buf).unwrap(), 5);
        // The name now means another address; it is looked up again once resolve_every passed.
        sender.address = b.local_addr().unwrap().to_string();
        sender.prepare(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(sender.target, Some(a.local_addr().unwrap()));
        sender.prepare(t0 + Duration::from_secs(61)).unwrap();
        sender.send(b"y:2|c", t0).unwrap();
        assert_eq!(b.recv(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"y:2|c");
    }
}
