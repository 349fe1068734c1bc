//! `sim --scenario NAME [--seed N | --seeds LIST [--jobs J]] [--duration S]`: runs one
//! simulated swarm scenario and prints its figures as one JSON object on the last stdout line
//! (progress goes to stderr).
//!
//! With `--seeds` (e.g. `1-12` or `1,4,7`) it runs the scenario once per seed, `J` runs at a
//! time (default: one per core), prints each run's JSON line in seed order, and ends with one
//! summary line: `scenario, seeds, runs` and the `mean`, `min` and `max` over the runs of
//! every numeric figure. Each run is the same as `--seed N` alone, byte for byte.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Map, Value};
use shoal_tests::sim::{Report, Scenario, Sim};

/// The simulator allocates and frees a chunk-sized buffer per peer and chunk, and many small
/// ones per message: mimalloc keeps those cheap where glibc's bins grew slow to search.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn usage() -> ! {
    eprintln!(
        "usage: sim --scenario NAME [--seed N | --seeds LIST [--jobs J]] [--duration SECONDS]\n  \
         LIST: seeds as 1-12 or 1,4,7 (or both, 1-3,9)\n  scenarios: {}",
        Scenario::NAMES.join(", ")
    );
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let mut seed = 1u64;
    let mut seeds = None;
    let mut jobs = None;
    let mut duration = None;
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--scenario" => scenario = Some(value()),
            "--seed" => seed = value().parse().unwrap_or_else(|_| usage()),
            "--seeds" => {
                let list = value();
                seeds = Some(parse_seeds(&list).unwrap_or_else(|e| {
                    eprintln!("sim: --seeds {list:?}: {e}");
                    usage()
                }));
            }
            "--jobs" => jobs = Some(value().parse::<usize>().unwrap_or_else(|_| usage()).max(1)),
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
    let Some(seeds) = seeds else {
        let report = Sim::new(sc, seed).run();
        println!("{}", to_json(&report));
        return;
    };
    let jobs = jobs
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .min(seeds.len());
    let reports = run_seeds(&sc, &seeds, jobs);
    for r in &reports {
        println!("{}", to_json(r));
    }
    println!("{}", summary(&name, &seeds, &reports));
}

fn to_json(report: &Report) -> String {
    serde_json::to_string(report).expect("a report always serialises")
}

/// `1-12`, `1,4,7` or a mix (`1-3,9`): distinct seeds, in the order given.
fn parse_seeds(list: &str) -> Result<Vec<u64>, String> {
    let mut out: Vec<u64> = Vec::new();
    for part in list.split(',').map(str::trim) {
        let bad = || format!("{part:?} is not a seed or a range of seeds");
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
            None => {
                let s = part.parse().map_err(|_| bad())?;
                (s, s)
            }
        };
        if a > b || b - a >= 10_000 {
            return Err(format!("{part:?}: want a short ascending range"));
        }
        for s in a..=b {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    if out.is_empty() {
        return Err("no seeds".into());
    }
    Ok(out)
}

/// Runs `sc` once per seed, `jobs` at a time; the reports in the order of `seeds`.
fn run_seeds(sc: &Scenario, seeds: &[u64], jobs: usize) -> Vec<Report> {
    let next = AtomicUsize::new(0);
    let done = Mutex::new(vec![None; seeds.len()]);
    let started = Instant::now();
    eprintln!("sim {}: {} seeds, {jobs} at a time", sc.name, seeds.len());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else { break };
                let report = Sim::new(sc.clone(), seed).quiet().run();
                let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
                let finished = done.iter().filter(|r| r.is_some()).count() + 1;
                eprintln!(
                    "sim {}: seed {seed} done ({finished}/{}, {:.0} s in): continuity {}, delivery p95 {} s, offload {}",
                    sc.name,
                    seeds.len(),
                    started.elapsed().as_secs_f64(),
                    report.continuity,
                    report.delivery_p95_s,
                    report.offload,
                );
                done[i] = Some(report);
            });
        }
    });
    done.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every seed ran"))
        .collect()
}

/// One JSON line: the mean, least and greatest of every numeric figure over the runs.
fn summary(name: &str, seeds: &[u64], reports: &[Report]) -> String {
    let values: Vec<Map<String, Value>> = reports
        .iter()
        .map(|r| match serde_json::to_value(r) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        })
        .collect();
    let (mut mean, mut min, mut max) = (Map::new(), Map::new(), Map::new());
    if let Some(first) = values.first() {
        for key in first.keys() {
            if key == "seed" {
                continue;
            }
            let nums: Vec<f64> = values
                .iter()
                .filter_map(|m| m.get(key).and_then(Value::as_f64))
                .collect();
            // Figures that are null in some runs (e.g. no late joiners) are left out.
            if nums.len() != values.len() {
                continue;
            }
            let round = |x: f64| Value::from((x * 10_000.0).round() / 10_000.0);
            mean.insert(
                key.clone(),
                round(nums.iter().sum::<f64>() / nums.len() as f64),
            );
            min.insert(
                key.clone(),
                round(nums.iter().copied().fold(f64::INFINITY, f64::min)),
            );
            max.insert(
                key.clone(),
                round(nums.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            );
        }
    }
    serde_json::json!({
        "scenario": name,
        "seeds": seeds,
        "runs": reports.len(),
        "mean": mean,
        "min": min,
        "max": max,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists_parse() {
        assert_eq!(parse_seeds("1-4").unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(parse_seeds("3, 1-2,3").unwrap(), vec![3, 1, 2]);
        assert!(parse_seeds("4-1").is_err());
        assert!(parse_seeds("x").is_err());
        assert!(parse_seeds("1-").is_err());
        assert!(parse_seeds("0-99999").is_err());
    }

    #[test]
    fn seeds_in_parallel_run_as_they_do_alone() {
        let sc = Scenario::by_name("smoke").unwrap();
        let together = run_seeds(&sc, &[3, 1, 2], 2);
        for (r, seed) in together.iter().zip([3, 1, 2]) {
            let mut alone = Sim::new(sc.clone(), seed).quiet().run();
            alone.wall_s = r.wall_s;
            assert_eq!(r, &alone);
        }
        let line: Value = serde_json::from_str(&summary("smoke", &[3, 1, 2], &together)).unwrap();
        assert_eq!(line["runs"], 3);
        let c: Vec<f64> = together.iter().map(|r| r.continuity).collect();
        let mean = c.iter().sum::<f64>() / 3.0;
        assert!((line["mean"]["continuity"].as_f64().unwrap() - mean).abs() < 1e-4);
        assert!(line["mean"].get("seed").is_none());
    }
}
