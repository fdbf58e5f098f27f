//! The runtime on real executors: every envelope arrives, in send order per sender,
//! also when rings are tiny and sends go through the outbox; roles are known to all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shards::{Role, RuntimeConfig};

const PER_PEER: u64 = 50_000;

fn run(cores: Vec<usize>, dedicated: Vec<usize>, ring_capacity: usize) -> (u64, Vec<Vec<Role>>) {
    let total = cores.len() + dedicated.len();
    let received = Arc::new(AtomicU64::new(0));
    let roles_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let cfg = RuntimeConfig {
        cores,
        dedicated_cores: dedicated,
        ring_capacity,
        ..Default::default()
    };
    let (r, seen) = (received.clone(), roles_seen.clone());
    let rt = shards::start::<(usize, u64), _, _>(cfg, move |shard| {
        let received = r.clone();
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(shard.roles().to_vec());
            assert_eq!(shard.roles()[shard.id()], shard.role());
            // next expected sequence number from each peer
            let next = std::rc::Rc::new(std::cell::RefCell::new(vec![0u64; shard.count()]));
            let n2 = next.clone();
            let me = shard.id();
            let counter = received.clone();
            shard.on_receive(move |from, (sender, seq)| {
                assert_eq!(
                    sender, from,
                    "envelope from {sender} arrived on ring {from}"
                );
                let mut next = n2.borrow_mut();
                assert_eq!(seq, next[from], "shard {me}: out of order from {from}");
                next[from] += 1;
                counter.fetch_add(1, Ordering::Relaxed);
                // Now and then push back: the sender's backlog must absorb it in order.
                (seq % 10_000 == 9_999).then(|| -> shards::Pause {
                    Box::pin(glommio::timer::sleep(Duration::from_millis(2)))
                })
            });
            for seq in 0..PER_PEER {
                for peer in (0..shard.count()).filter(|&p| p != me) {
                    shard.send(peer, (me, seq));
                }
                if seq % 1024 == 0 {
                    // exercise backpressure: never let the outbox grow without bound
                    for peer in (0..shard.count()).filter(|&p| p != me) {
                        if shard.backlog(peer) > 4096 {
                            shard.wait_backlog(peer, 256).await;
                        }
                    }
                    futures_lite::future::yield_now().await;
                }
            }
            let want = PER_PEER * (shard.count() as u64 - 1);
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while next.borrow().iter().sum::<u64>() < want {
                assert!(std::time::Instant::now() < deadline, "shard {me} starved");
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            // Let the peers drain what this shard still owes them.
            for peer in (0..shard.count()).filter(|&p| p != me) {
                shard.wait_backlog(peer, 0).await;
            }
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
    })
    .expect("runtime starts");
    rt.join().expect("shards finish");
    let got = received.load(Ordering::Relaxed);
    assert_eq!(got, PER_PEER * (total as u64) * (total as u64 - 1));
    let seen = roles_seen.lock().unwrap().clone();
    (got, seen)
}

#[test]
fn every_envelope_arrives_in_order() {
    run(vec![0, 0, 0], vec![], 4096);
}

#[test]
fn tiny_rings_go_through_the_outbox_in_order() {
    run(vec![0, 0], vec![], 4);
}

#[test]
fn dedicated_cores_join_with_their_role() {
    let (_, seen) = run(vec![0, 0], vec![0], 64);
    assert_eq!(seen.len(), 3);
    for roles in &seen {
        assert_eq!(roles.iter().filter(|r| **r == Role::Dedicated).count(), 1);
        assert_eq!(roles.iter().filter(|r| **r == Role::Client).count(), 2);
        assert_eq!(roles, &seen[0], "every peer sees the same roles");
    }
}

#[test]
fn single_shard_runs_without_rings() {
    let cfg = RuntimeConfig::default();
    let ran = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    shards::start::<u8, _, _>(cfg, move |shard| {
        let r = r.clone();
        async move {
            assert_eq!((shard.id(), shard.count()), (0, 1));
            shard.send(0, 1); // to itself: ignored
            assert_eq!(shard.backlog(0), 0);
            r.fetch_add(1, Ordering::Relaxed);
        }
    })
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), 1);
}

#[test]
fn allowed_cores_and_preflight() {
    assert!(!shards::allowed_cores().is_empty());
    shards::preflight(64 << 10).expect("io_uring works here");
}
