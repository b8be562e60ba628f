//! A party waiting for one neighbour's frame watches the other's link: a
//! party out of step aborts to both neighbours, and the two others, each
//! waiting for the other's frame, waited out the timeout and blamed each
//! other, never naming its reason (a user probe). Its abort is now the
//! error at once.

use super::{read_frame, Link, TcpTransport};
use crate::error::{EngineError, Result};
use crate::net::{Msg, Peer, Transport};
use std::time::{Duration, Instant};

impl Link {
    /// Whether the next frame has begun to arrive, waiting at most `wait`
    /// (true as well when the stream ended or failed: reading says so).
    /// The caller sets the read timeout again before it reads.
    fn ready(&mut self, wait: Duration) -> bool {
        if self.pos < self.buf.len() {
            return true; // decrypted bytes not read yet
        }
        let wait = wait.max(Duration::from_millis(1));
        if self.stream.set_read_timeout(Some(wait)).is_err() {
            return true;
        }
        match self.stream.peek(&mut [0u8; 1]) {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
            ),
        }
    }

    /// The next frame, each read waiting at most `timeout`.
    fn read_with(&mut self, timeout: Duration) -> std::io::Result<Msg> {
        self.stream.set_read_timeout(Some(timeout))?;
        read_frame(self)
    }
}

/// How long a party waiting for one neighbour's frame waits at a time
/// before it looks at the other neighbour's link (`TcpTransport::watch`).
const WATCH: Duration = Duration::from_millis(50);

impl TcpTransport {
    /// The next frame from `from`, waiting at most the session's timeout
    /// for it to begin, and watching the other neighbour's link meanwhile.
    pub(super) fn recv_watching(&mut self, from: Peer) -> Result<(u64, Vec<u64>)> {
        let other = match from {
            Peer::Next => Peer::Prev,
            Peer::Prev => Peer::Next,
        };
        let (timeout, deadline) = (self.timeout, Instant::now() + self.timeout);
        let mut idle = false;
        let got = loop {
            let link = self.stream(from);
            if let Some(m) = link.early.pop_front() {
                break m;
            }
            if link.ready(WATCH) {
                break link.read_with(timeout);
            }
            if Instant::now() >= deadline {
                idle = true; // no frame began: the stream is at a frame's start
                break Err(std::io::ErrorKind::TimedOut.into());
            }
            self.watch(other)?;
        };
        let timed_out = matches!(&got, Err(e) if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));
        let r = self.judge(from, got);
        if let (true, Err(e)) = (timed_out, &r) {
            // As on ZeroMQ links: told to the other neighbour at once (it may
            // be waiting on this party with about the same deadline), then a
            // last short wait for `from`'s own abort, which names the party
            // it waits on in turn (until the thirtieth session a party on TCP
            // named its neighbour, alive, in half the runs with one party
            // stopped).
            // (the short wait only where no frame began: one that stalled
            // midway leaves the stream mid-frame, a review)
            let _ = self.send(other, Msg::Abort(e.reason()));
            let (grace, who) = (timeout.min(Duration::from_secs(1)), from.rank(self.rank));
            let link = self.stream(from);
            if idle && link.ready(grace) {
                if let Ok(Msg::Abort(why)) = link.read_with(grace) {
                    link.ended = true;
                    return Err(EngineError::Peer(format!("party {who} aborted: {why}")));
                }
            }
        }
        r
    }

    /// Read the frame the neighbour at `p` began to send, if any: its
    /// abort notice is the error (on encrypted links it opened under the
    /// link's keys: only the neighbour can have sent it); its data waits
    /// for this party's `recv` from it, as does an error reading it.
    fn watch(&mut self, p: Peer) -> Result<()> {
        let (timeout, who) = (self.timeout, p.rank(self.rank));
        let link = self.stream(p);
        if link.ended || !link.ready(Duration::from_millis(1)) {
            return Ok(());
        }
        match link.read_with(timeout) {
            Ok(Msg::Abort(why)) => {
                link.ended = true;
                Err(EngineError::Peer(format!("party {who} aborted: {why}")))
            }
            Ok(m) => {
                link.early.push_back(Ok(m));
                Ok(())
            }
            Err(e) => {
                link.ended = true;
                link.early.push_back(Err(e));
                Ok(())
            }
        }
    }
}
