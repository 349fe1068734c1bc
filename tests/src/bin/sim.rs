//! `sim --scenario NAME [--seed N] [--duration S]`: runs one simulated swarm scenario and
//! prints its figures as one JSON object on the last stdout line (progress goes to stderr).

use shoal_tests::sim::{Scenario, Sim};

/// The simulator allocates and frees a chunk-sized buffer per peer and chunk, and many small
/// ones per message: mimalloc keeps those cheap where glibc's bins grew slow to search.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn usage() -> ! {
    eprintln!(
        "usage: sim --scenario NAME [--seed N] [--duration SECONDS]\n  scenarios: {}",
        Scenario::NAMES.join(", ")
    );
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let mut seed = 1u64;
    let mut duration = None;
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--scenario" => scenario = Some(value()),
            "--seed" => seed = value().parse().unwrap_or_else(|_| usage()),
            "--duration" => duration = Some(value().parse::<f64>().unwrap_or_else(|_| usage())),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("sim: unknown argument {other:?}");
                usage()
            }
        }
    }
    let Some(name) = scenario else { usage() };
    let Some(mut sc) = Scenario::by_name(&name) else {
        eprintln!("sim: no scenario named {name:?}");
        usage()
    };
    if let Some(d) = duration {
        sc.duration_s = d;
    }
    let report = Sim::new(sc, seed).run();
    println!(
        "{}",
        serde_json::to_string(&report).expect("a report always serialises")
    );
}
