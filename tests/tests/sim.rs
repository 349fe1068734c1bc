//! The simulator's promises: a seed reproduces a run byte for byte, and the swarm it drives
//! never plays a corrupt chunk and bans the peers that send one.

use shoal_tests::sim::{Scenario, Sim};

fn smoke(seed: u64) -> shoal_tests::sim::Report {
    let sc = Scenario::by_name("smoke").expect("the smoke scenario exists");
    Sim::new(sc, seed).quiet().run()
}

#[test]
fn same_seed_same_trace() {
    let mut a = smoke(7);
    let mut b = smoke(7);
    a.wall_s = 0.0;
    b.wall_s = 0.0;
    assert_eq!(
        a, b,
        "two runs with one seed must agree on every figure and byte"
    );
    let mut c = smoke(8);
    c.wall_s = 0.0;
    assert_ne!(a.trace, c.trace, "another seed gives another run");
}

#[test]
fn swarm_delivers_and_liars_are_banned() {
    let r = smoke(3);
    assert_eq!(r.corrupt_chunks_played, 0);
    assert!(r.bans > 0, "peers sending corrupt pieces are banned: {r:?}");
    assert!(r.continuity > 0.9, "{r:?}");
    assert!(r.offload > 0.5, "viewers carry most of the stream: {r:?}");
}
