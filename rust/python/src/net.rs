//! The links of one party of a multi-process session (the engine's `net`):
//! `Session.connect`'s arguments checked and resolved under the GIL into a
//! `Links`, whose `connect` then builds the TCP or ZeroMQ transport without
//! it.

use crate::error::{invalid, to_py};
use crate::keys::unhex32;
use cryptgpu_engine::net::noise::{job_digest, LinkKeys};
use cryptgpu_engine::net::tcp::TcpTransport;
use cryptgpu_engine::net::zmq::ZmqTransport;
use cryptgpu_engine::net::Transport;
use pyo3::prelude::*;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The transport a party's links use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// ZeroMQ sockets (the default; may bind apart from its advertised address).
    Zmq,
    /// Plain TCP streams.
    Tcp,
}

/// Checked link arguments of party `rank`.
pub struct Links {
    rank: usize,
    addrs: [SocketAddr; 3],
    bind: Option<SocketAddr>,
    kind: Kind,
    timeout: Duration,
    keys: Option<LinkKeys>,
}

fn resolve(p: &str, what: &str) -> PyResult<SocketAddr> {
    p.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| invalid(format!("cannot resolve {what} {p:?} (host:port)")))
}

/// Both the private key and the three public keys, or neither (plaintext).
fn link_keys(
    key: Option<&str>,
    pubkeys: Option<&[String]>,
    job: &str,
) -> PyResult<Option<LinkKeys>> {
    match (key, pubkeys) {
        (Some(k), Some(ps)) => {
            if ps.len() != 3 {
                return Err(invalid(format!("need 3 public keys, got {}", ps.len())));
            }
            Ok(Some(LinkKeys {
                private: unhex32(k, "private key")?,
                publics: [
                    unhex32(&ps[0], "public key 0")?,
                    unhex32(&ps[1], "public key 1")?,
                    unhex32(&ps[2], "public key 2")?,
                ],
                job: job_digest(job).map_err(to_py)?,
            }))
        }
        (None, None) => Ok(None),
        _ => Err(invalid("give both key and pubkeys, or neither")),
    }
}

impl Links {
    /// Check the arguments and resolve the addresses: `peers` are the three
    /// parties' host:port, `transport` "zmq" or "tcp", `bind` (zmq only)
    /// where this party listens instead of `peers[rank]`, `key`/`pubkeys`
    /// hex X25519 keys for encrypted links, `job` a name the three parties
    /// share (it names the job in every handshake).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rank: usize,
        peers: &[String],
        transport: &str,
        bind: Option<&str>,
        timeout: Duration,
        key: Option<&str>,
        pubkeys: Option<&[String]>,
        job: &str,
    ) -> PyResult<Self> {
        if peers.len() != 3 {
            return Err(invalid(format!(
                "need 3 peer addresses, got {}",
                peers.len()
            )));
        }
        let addrs = [
            resolve(&peers[0], "peer address")?,
            resolve(&peers[1], "peer address")?,
            resolve(&peers[2], "peer address")?,
        ];
        // what could only fail at the timeout: a port the system picks (no
        // peer can dial it), one address for two parties
        for (p, a) in peers.iter().zip(&addrs) {
            if a.port() == 0 {
                return Err(invalid(format!(
                    "peer address {p:?} has port 0: give each party a port to listen on"
                )));
            }
        }
        for i in 0..3 {
            for j in i + 1..3 {
                if addrs[i] == addrs[j] {
                    return Err(invalid(format!(
                        "peer address {:?} is given for two parties ({i} and {j})",
                        peers[j]
                    )));
                }
            }
        }
        let bind = bind.map(|b| resolve(b, "bind address")).transpose()?;
        let kind = match transport {
            "zmq" => Kind::Zmq,
            "tcp" => Kind::Tcp,
            other => {
                return Err(invalid(format!(
                    "unknown transport {other:?}; expected \"zmq\" or \"tcp\""
                )))
            }
        };
        if kind == Kind::Tcp && bind.is_some() {
            return Err(invalid("a separate bind address needs the zmq transport"));
        }
        let keys = link_keys(key, pubkeys, job)?;
        if let Some(k) = &keys {
            cryptgpu_engine::net::noise::check_own_key(k, rank).map_err(to_py)?;
        }
        Ok(Links {
            rank,
            addrs,
            bind,
            kind,
            timeout,
            keys,
        })
    }

    /// Connect to the two neighbours; blocks up to the timeout, so run it
    /// without the GIL.
    pub fn connect(&self) -> cryptgpu_engine::Result<Box<dyn Transport>> {
        let keys = self.keys.as_ref();
        Ok(match self.kind {
            Kind::Tcp => Box::new(TcpTransport::connect(
                self.rank,
                &self.addrs,
                self.timeout,
                keys,
            )?),
            Kind::Zmq => Box::new(ZmqTransport::connect(
                self.rank,
                &self.addrs,
                self.bind,
                self.timeout,
                keys,
            )?),
        })
    }
}
