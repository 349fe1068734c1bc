//! The benchmark scenarios of issue 2 (2 Mbit/s stream, 0.5 s chunks).

/// How viewers' upload capacities are drawn, in multiples of the stream bitrate.
#[derive(Debug, Clone)]
pub enum Uploads {
    /// Every viewer the same.
    Fixed(f64),
    /// Uniform between two multiples.
    Uniform(f64, f64),
    /// (share, multiple) classes; shares add up to 1.
    Classes(Vec<(f64, f64)>),
}

/// One simulated run's setting.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name on the command line.
    pub name: &'static str,
    /// Concurrent viewers (churn replaces leavers, so the count stays near this).
    pub peers: usize,
    /// Simulated seconds.
    pub duration_s: f64,
    /// Viewers' upload capacities.
    pub uploads: Uploads,
    /// Viewers' download capacity, multiples of the bitrate.
    pub download: f64,
    /// Share of viewers that leave (and are replaced) per minute.
    pub churn_per_min: f64,
    /// Initial joins are spread uniformly over this many seconds.
    pub join_window_s: f64,
    /// One-way link latency range, milliseconds.
    pub latency_ms: (f64, f64),
    /// Share of viewers that lie: corrupt pieces, announce chunks they lack, never upload.
    pub hostile: f64,
    /// Stream bitrate, bits per second.
    pub bitrate: f64,
    /// Chunk duration, seconds.
    pub chunk_s: f64,
    /// Origin upload capacity, bits per second (seeder and HTTP fallback share it).
    pub origin_bps: f64,
    /// Connection set-up delay after the tracker pairs two peers, seconds.
    pub connect_s: f64,
    /// An upload cap every viewer configures in its swarm settings (like `shoal peer
    /// --upload-limit`), multiples of the bitrate; unlike `uploads` (the link's own
    /// capacity), a capped peer on a fast link still sends each piece at link speed.
    pub upload_cap: Option<f64>,
}

impl Scenario {
    fn base(name: &'static str, peers: usize, duration_s: f64) -> Self {
        Scenario {
            name,
            peers,
            duration_s,
            uploads: Uploads::Uniform(1.0, 4.0),
            download: 12.0,
            churn_per_min: 0.0,
            join_window_s: 5.0,
            latency_ms: (10.0, 100.0),
            hostile: 0.0,
            bitrate: 2_000_000.0,
            chunk_s: 0.5,
            origin_bps: 40_000_000.0,
            connect_s: 0.3,
            upload_cap: None,
        }
    }

    /// The named scenario, if it exists.
    pub fn by_name(name: &str) -> Option<Scenario> {
        let s = match name {
            "ten" => Scenario {
                uploads: Uploads::Fixed(2.0),
                ..Self::base("ten", 10, 120.0)
            },
            "hundred" => Scenario {
                churn_per_min: 0.05,
                ..Self::base("hundred", 100, 180.0)
            },
            "thousand" => Scenario {
                uploads: Uploads::Classes(vec![(0.3, 0.5), (0.5, 1.5), (0.2, 4.0)]),
                churn_per_min: 0.10,
                join_window_s: 60.0,
                latency_ms: (10.0, 200.0),
                ..Self::base("thousand", 1000, 180.0)
            },
            "hostile" => Scenario {
                churn_per_min: 0.05,
                hostile: 0.2,
                ..Self::base("hostile", 100, 180.0)
            },
            "flash" => Scenario {
                join_window_s: 10.0,
                ..Self::base("flash", 500, 60.0)
            },
            // The shape `swarm-live` runs on loopback (20 native peers, the demo stream of
            // ~0.21 Mbit/s, joins 100 ms apart, the seeder at 1.25× the stream), to compare
            // the simulator with the real swarm. Loopback data channels carry 10–17 MB/s
            // (ENVIRONMENT.md): about 400× this stream, up and down.
            "live20" => Scenario {
                uploads: Uploads::Fixed(400.0),
                download: 400.0,
                join_window_s: 2.0,
                latency_ms: (0.05, 0.3),
                bitrate: 212_000.0,
                ..Self::base("live20", 20, 60.0)
            },
            // The same with every viewer's upload capped at 400 kbit/s, 1.89× the stream
            // (`swarm-live --upload-limit 400k`).
            "live20-capped" => Scenario {
                name: "live20-capped",
                upload_cap: Some(400_000.0 / 212_000.0),
                ..Self::by_name("live20")?
            },
            // Small and quick, for tests.
            "smoke" => Scenario {
                uploads: Uploads::Fixed(2.0),
                churn_per_min: 0.05,
                hostile: 0.25,
                join_window_s: 2.0,
                ..Self::base("smoke", 12, 30.0)
            },
            _ => return None,
        };
        Some(s)
    }

    /// Every scenario name.
    pub const NAMES: &'static [&'static str] = &[
        "ten",
        "hundred",
        "thousand",
        "hostile",
        "flash",
        "live20",
        "live20-capped",
        "smoke",
    ];
}
