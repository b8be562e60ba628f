//! The SPMD runtime (one party per session, each driven by its own thread,
//! as each process will drive one in a distributed run) gives bit-identical
//! results and identical counters to the local runtime with the same seed.

use cryptgpu_engine::runtime::{Config, Session, Tensor};

fn workload(s: &Session) -> (Vec<u64>, Vec<u64>) {
    let a: Vec<f64> = (0..60).map(|i| (i as f64 - 30.0) / 7.0).collect();
    let b: Vec<f64> = (0..60).map(|i| ((i * 7 % 13) as f64 - 6.0) / 3.0).collect();
    let x = s.share_f64(&a, vec![6, 10], 0).unwrap();
    let y = s.share_f64(&b, vec![10, 6], 1).unwrap();
    let z: Tensor = s.matmul(&x, &y).unwrap();
    let r = s.relu(&z).unwrap();
    let img = s.reshape(&r, vec![1, 1, 6, 6]).unwrap();
    let p = s.avg_pool2d(&img, (2, 2), (2, 2), (0, 0)).unwrap();
    let out = s.reveal_ring(&p).unwrap();
    let st = s.stats().unwrap();
    let mine: Vec<u64> = st
        .iter()
        .flat_map(|m| m.values().flat_map(|o| [o.rounds, o.bytes, o.messages]))
        .collect();
    (out, mine)
}

#[test]
fn spmd_parties_match_the_local_runtime_bit_for_bit() {
    spmd_matches_local(false);
}

/// The same with the exact truncation (rust/engine/src/protocol/trunc.rs):
/// each SPMD party sets the mode on its own session, as each process does.
#[test]
fn spmd_parties_match_the_local_runtime_with_exact_truncation() {
    spmd_matches_local(true);
}

fn spmd_matches_local(exact: bool) {
    let cfg = Config {
        seed: Some(99),
        ..Config::default()
    };
    let local = Session::new(cfg.clone()).unwrap();
    local.set_exact_truncation(exact).unwrap();
    let (want, local_counts) = workload(&local);
    let parties = Session::spmd_local(cfg).unwrap();
    let results: Vec<(Vec<u64>, Vec<u64>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = parties
            .iter()
            .map(|p| {
                sc.spawn(move || {
                    p.set_exact_truncation(exact).unwrap();
                    workload(p)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, (got, counts)) in results.iter().enumerate() {
        assert_eq!(got, &want, "party {rank} opened a different result");
        assert_eq!(parties[rank].ranks(), &[rank]);
        // Each SPMD party's counters equal that party's in the local runtime.
        let per = counts.len();
        assert_eq!(
            counts[..],
            local_counts[rank * per..(rank + 1) * per],
            "party {rank} counters"
        );
    }
}

#[test]
fn an_spmd_party_holds_only_its_own_share() {
    let parties = Session::spmd_local(Config {
        seed: Some(1),
        ..Config::default()
    })
    .unwrap();
    let ts: Vec<Tensor> = std::thread::scope(|sc| {
        let hs: Vec<_> = parties
            .iter()
            .map(|p| sc.spawn(move || p.share_f64(&[1.0, 2.0], vec![2], 0).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, t) in ts.iter().enumerate() {
        assert!(t.at(rank).is_ok());
        assert!(t.at((rank + 1) % 3).is_err());
        assert!(parties[rank].party_share(t, (rank + 2) % 3).is_err());
    }
}

fn free_addrs() -> [std::net::SocketAddr; 3] {
    let ls: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let a: Vec<_> = ls.iter().map(|l| l.local_addr().unwrap()).collect();
    [a[0], a[1], a[2]]
}

fn keys() -> Vec<cryptgpu_engine::net::tcp::LinkKeys> {
    let kp: Vec<_> = (0..3)
        .map(|_| cryptgpu_engine::net::tcp::generate_keypair().unwrap())
        .collect();
    let publics = [kp[0].1, kp[1].1, kp[2].1];
    kp.iter()
        .map(|(private, _)| cryptgpu_engine::net::tcp::LinkKeys {
            private: *private,
            publics,
            job: [0; 32],
        })
        .collect()
}

/// Which transport between processes a test uses.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Tcp,
    Zmq,
}

fn connect(
    kind: Kind,
    r: usize,
    addrs: &[std::net::SocketAddr; 3],
    timeout: std::time::Duration,
    k: Option<&cryptgpu_engine::net::noise::LinkKeys>,
) -> cryptgpu_engine::Result<Box<dyn cryptgpu_engine::net::Transport>> {
    Ok(match kind {
        Kind::Tcp => Box::new(cryptgpu_engine::net::tcp::TcpTransport::connect(
            r, addrs, timeout, k,
        )?),
        Kind::Zmq => Box::new(cryptgpu_engine::net::zmq::ZmqTransport::connect(
            r, addrs, None, timeout, k,
        )?),
    })
}

fn run_over(kind: Kind, encrypted: bool) {
    use std::time::Duration;
    let cfg = Config {
        seed: Some(99),
        ..Config::default()
    };
    let (want, local_counts) = workload(&Session::new(cfg.clone()).unwrap());
    let addrs = free_addrs();
    let ks = keys();
    let results: Vec<(Vec<u64>, Vec<u64>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3)
            .map(|r| {
                let cfg = cfg.clone();
                let k = if encrypted { Some(ks[r].clone()) } else { None };
                sc.spawn(move || {
                    let t = connect(kind, r, &addrs, Duration::from_secs(10), k.as_ref()).unwrap();
                    let s = Session::single(cfg, r, t).unwrap();
                    let out = workload(&s);
                    s.close().expect("the session ends cleanly");
                    out
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, (got, counts)) in results.iter().enumerate() {
        assert_eq!(got, &want, "{kind:?} encrypted={encrypted} party {rank}");
        let per = counts.len();
        assert_eq!(counts[..], local_counts[rank * per..(rank + 1) * per]);
    }
}

#[test]
fn tcp_parties_match_the_local_runtime_plain_and_encrypted() {
    run_over(Kind::Tcp, false);
    run_over(Kind::Tcp, true);
}

#[test]
fn zmq_parties_match_the_local_runtime_plain_and_encrypted() {
    run_over(Kind::Zmq, false);
    run_over(Kind::Zmq, true);
}

#[test]
fn a_missing_peer_is_a_clear_error_within_the_timeout() {
    use std::time::{Duration, Instant};
    for kind in [Kind::Tcp, Kind::Zmq] {
        let addrs = free_addrs();
        let t0 = Instant::now();
        let err = connect(kind, 0, &addrs, Duration::from_millis(600), None)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("could not reach party"),
            "{kind:?}: {err}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5), "{kind:?}");
    }
}

#[test]
fn a_party_with_a_wrong_key_is_refused_naming_the_peer() {
    for kind in [Kind::Tcp, Kind::Zmq] {
        wrong_key(kind);
    }
}

fn wrong_key(kind: Kind) {
    use std::time::{Duration, Instant};
    let addrs = free_addrs();
    let mut ks = keys();
    ks[2].private = cryptgpu_engine::net::tcp::generate_keypair().unwrap().0; // not the key the others expect
    let t0 = Instant::now();
    let errs: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3)
            .map(|r| {
                let k = ks[r].clone();
                sc.spawn(
                    move || match connect(kind, r, &addrs, Duration::from_secs(5), Some(&k)) {
                        Ok(_) => String::new(),
                        Err(e) => e.to_string(),
                    },
                )
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Party 1 initiates to party 2 and cannot authenticate it; party 0
    // answers party 2's handshake and refuses it.
    assert!(
        errs.iter()
            .any(|e| e.contains("party 2") && e.contains("wrong or missing key")),
        "{kind:?}: {errs:?}"
    );
    assert!(
        errs.iter().filter(|e| !e.is_empty()).count() >= 2,
        "{kind:?}: {errs:?}"
    );
    // Refusal is immediate, not the 5 s timeout of every party.
    assert!(t0.elapsed() < Duration::from_secs(9), "{kind:?}");
}

/// Every party sends a 32 MB message to a neighbour before receiving
/// (reveal of 4M elements). Blocking writes filled all three kernel buffers
/// and deadlocked the TCP transport; sends must not wait for the reader.
#[test]
fn large_simultaneous_sends_do_not_deadlock() {
    use std::time::{Duration, Instant};
    for kind in [Kind::Tcp, Kind::Zmq] {
        let cfg = Config {
            seed: Some(5),
            timeout: Duration::from_secs(20),
            ..Config::default()
        };
        let addrs = free_addrs();
        let ks = keys();
        let n = 4_000_000;
        let t0 = Instant::now();
        let outs: Vec<usize> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..3)
                .map(|r| {
                    let cfg = cfg.clone();
                    let k = ks[r].clone();
                    sc.spawn(move || {
                        let t = connect(kind, r, &addrs, cfg.timeout, Some(&k)).unwrap();
                        let s = Session::single(cfg, r, t).unwrap();
                        let x = s.share_f64(&vec![0.5; n], vec![n], 0).unwrap();
                        let y = s.reveal_ring(&x).unwrap();
                        s.close().expect("the session ends cleanly");
                        y.len()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(outs, vec![n; 3], "{kind:?}");
        assert!(t0.elapsed() < Duration::from_secs(20), "{kind:?}");
    }
}
