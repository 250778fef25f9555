//! Control connections waiting for their request line, read without
//! blocking: the daemon's loop also handles OOMs, so a client that connects
//! and sends nothing (or sends slowly) must cost it nothing but a
//! descriptor, for a bounded time. Served connections leave this set; the
//! response is written by the caller.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::control::MAX_REQUEST;

/// Connections waiting for a request at once; beyond that the one waiting
/// longest is closed unanswered, so a flood of silent connections cannot
/// lock out a client that sends its request at once.
pub const MAX_PENDING: usize = 64;
/// How long a connection may take to send its request line.
pub const REQUEST_DEADLINE: Duration = Duration::from_millis(500);

struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    since: Instant,
}

/// What a connection sent, once it is complete.
pub enum Got {
    /// One request line (without the newline).
    Line(UnixStream, Vec<u8>),
    /// More than [`MAX_REQUEST`] bytes without a newline.
    TooLong(UnixStream),
}

/// The connections still sending their request.
#[derive(Default)]
pub struct Pending {
    conns: Vec<Conn>,
}

impl Pending {
    /// Whether any connection is waiting (the loop then wakes often enough
    /// to read them and to enforce [`REQUEST_DEADLINE`]).
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Takes a freshly accepted connection and reads what it sent: a
    /// complete request is returned at once, anything else waits (the
    /// longest-waiting connection is closed when [`MAX_PENDING`] wait).
    /// Returns `(complete, evicted)`.
    pub fn admit(&mut self, stream: UnixStream, now: Instant) -> (Option<Got>, bool) {
        if stream.set_nonblocking(true).is_err() {
            return (None, true);
        }
        let mut c = Conn {
            stream,
            buf: Vec::new(),
            since: now,
        };
        let got = match read_some(&mut c) {
            Progress::Line(n) => {
                c.buf.truncate(n);
                return (Some(Got::Line(c.stream, c.buf)), false);
            }
            Progress::TooLong => return (Some(Got::TooLong(c.stream)), false),
            Progress::Eof if !c.buf.is_empty() => return (Some(Got::Line(c.stream, c.buf)), false),
            Progress::Eof | Progress::Failed => return (None, false),
            Progress::More => None,
        };
        let evicted = self.conns.len() >= MAX_PENDING;
        if evicted {
            self.conns.remove(0);
        }
        self.conns.push(c);
        (got, evicted)
    }

    /// Reads what every connection has sent so far; returns the complete
    /// ones and drops those past the deadline or closed without a request.
    pub fn take_ready(&mut self, now: Instant) -> Vec<Got> {
        let mut done = Vec::new();
        let mut keep = Vec::with_capacity(self.conns.len());
        for mut c in std::mem::take(&mut self.conns) {
            match read_some(&mut c) {
                Progress::Line(n) => {
                    let mut buf = std::mem::take(&mut c.buf);
                    buf.truncate(n);
                    done.push(Got::Line(c.stream, buf));
                }
                Progress::Eof if !c.buf.is_empty() => {
                    let buf = std::mem::take(&mut c.buf);
                    done.push(Got::Line(c.stream, buf));
                }
                // A connection probe, or a client that gave up.
                Progress::Eof | Progress::Failed => {}
                Progress::TooLong => done.push(Got::TooLong(c.stream)),
                Progress::More if now.saturating_duration_since(c.since) < REQUEST_DEADLINE => {
                    keep.push(c)
                }
                // Too slow: closed unanswered.
                Progress::More => {}
            }
        }
        self.conns = keep;
        done
    }
}

enum Progress {
    /// A newline at this offset.
    Line(usize),
    Eof,
    Failed,
    TooLong,
    More,
}

fn read_some(c: &mut Conn) -> Progress {
    let mut chunk = [0u8; 4096];
    loop {
        match c.stream.read(&mut chunk) {
            Ok(0) => return Progress::Eof,
            Ok(n) => {
                let start = c.buf.len();
                c.buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = c.buf[start..].iter().position(|&b| b == b'\n') {
                    return Progress::Line(start + i);
                }
                if c.buf.len() as u64 > MAX_REQUEST {
                    return Progress::TooLong;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Progress::More,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Progress::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn silent_slow_and_complete_connections() {
        let mut p = Pending::default();
        let t0 = Instant::now();
        let (mut a, a_srv) = UnixStream::pair().unwrap();
        let (_b, b_srv) = UnixStream::pair().unwrap();
        let (mut c, c_srv) = UnixStream::pair().unwrap();
        for s in [a_srv, b_srv, c_srv] {
            assert!(matches!(p.admit(s, t0), (None, false)));
        }
        a.write_all(b"{\"op\":\"sta").unwrap();
        c.write_all(&vec![b'x'; MAX_REQUEST as usize + 10]).unwrap();
        let got = p.take_ready(t0);
        assert!(matches!(got.as_slice(), [Got::TooLong(_)]));
        a.write_all(b"tus\"}\nextra").unwrap();
        let got = p.take_ready(t0);
        match got.as_slice() {
            [Got::Line(_, l)] => assert_eq!(l, b"{\"op\":\"status\"}"),
            _ => panic!("expected one line"),
        }
        // The silent one is dropped at its deadline.
        assert!(!p.is_empty());
        assert!(p.take_ready(t0 + REQUEST_DEADLINE).is_empty());
        assert!(p.is_empty());
    }

    #[test]
    fn a_complete_request_is_served_even_when_full() {
        let mut p = Pending::default();
        let mut keep = Vec::new();
        for _ in 0..MAX_PENDING {
            let (a, b) = UnixStream::pair().unwrap();
            keep.push(a);
            assert!(matches!(p.admit(b, Instant::now()), (None, false)));
        }
        let (_a, b) = UnixStream::pair().unwrap();
        assert!(matches!(p.admit(b, Instant::now()), (None, true)));
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"{}\n").unwrap();
        assert!(matches!(
            p.admit(b, Instant::now()),
            (Some(Got::Line(..)), false)
        ));
    }
}
