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

#[test]
fn the_origin_never_sends_more_than_its_link_carries() {
    // A link narrower than the seeder's own cap (1.25 copies of a 2 Mbit/s stream): the
    // seeder takes all of it and the HTTP fallback, which gets only what the seeder leaves,
    // must refuse rather than serve for free.
    let sc = Scenario {
        origin_bps: 2e6,
        ..Scenario::by_name("smoke").expect("the smoke scenario exists")
    };
    let r = Sim::new(sc, 5).quiet().run();
    assert!(
        r.origin_mbit_s <= 2.0,
        "the origin sent more than its 2 Mbit/s link: {r:?}"
    );
    assert!(r.http_refused > 0, "HTTP got no room and said so: {r:?}");
}
