//! Realistic synthetic series: node_exporter-like and service metrics across many hosts.
//!
//! Every host ("instance") carries the same ~250 series built from about fifty metric names,
//! each series with five to eight labels (`__name__`, `job`, `instance`, `region`, `env` and
//! the family's own: `cpu`/`mode`, `device`, `mountpoint`/`fstype`, `method`/`code`/`handler`,
//! …). A run with N series takes the first N of host 0, host 1, … in order.

/// How a series' values evolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Goes up and down.
    Gauge,
    /// Cumulative and monotonic (`_total`, `_sum`, `_count`).
    Counter,
}

/// One generated series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesDef {
    /// The metric name (`__name__`).
    pub name: &'static str,
    /// Labels that describe the emitting process: `job`, `instance`, `region`, `env`
    /// (OTLP resource attributes).
    pub resource: Vec<(&'static str, String)>,
    /// The family's own labels (OTLP data point attributes).
    pub attributes: Vec<(&'static str, String)>,
    /// Gauge or counter.
    pub kind: Kind,
    /// Seed for this series' values.
    pub seed: u64,
}

impl SeriesDef {
    /// All labels, `__name__` first, as Prometheus would send them.
    pub fn prometheus_labels(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(1 + self.resource.len() + self.attributes.len());
        out.push(("__name__".to_string(), self.name.to_string()));
        for (n, v) in self.resource.iter().chain(&self.attributes) {
            out.push(((*n).to_string(), v.clone()));
        }
        out.sort();
        out
    }

    /// The value of this series at `round` (0, 1, 2, …): counters grow by a per-series
    /// whole-number increment, gauges wander over a per-series range.
    pub fn value(&self, round: u64) -> f64 {
        let base = (self.seed % 10_000) as f64;
        match self.kind {
            Kind::Counter => {
                let increment = 1 + (self.seed >> 16) % 500;
                base + (round * increment) as f64
            }
            Kind::Gauge => {
                let amplitude = 1 + (self.seed >> 20) % 100;
                let phase = (round.wrapping_mul(13).wrapping_add(self.seed >> 32)) % 64;
                base + (amplitude * phase) as f64 / 64.0
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Shape {
    /// No labels of its own.
    Plain,
    /// `cpu` × `mode`.
    CpuMode,
    /// `cpu` × `package`.
    Cpu,
    /// `device` (block devices).
    Disk,
    /// `device` (network interfaces).
    Net,
    /// `device`, `mountpoint`, `fstype`.
    Filesystem,
    /// `method` × `code` × `handler`.
    Http,
    /// `grpc_method` × `grpc_code`.
    Grpc,
}

const FAMILIES: &[(&str, Shape)] = &[
    ("node_cpu_seconds_total", Shape::CpuMode),
    ("node_cpu_guest_seconds_total", Shape::CpuMode),
    ("node_cpu_scaling_frequency_hertz", Shape::Cpu),
    ("node_load1", Shape::Plain),
    ("node_load5", Shape::Plain),
    ("node_load15", Shape::Plain),
    ("node_memory_MemTotal_bytes", Shape::Plain),
    ("node_memory_MemFree_bytes", Shape::Plain),
    ("node_memory_MemAvailable_bytes", Shape::Plain),
    ("node_memory_Buffers_bytes", Shape::Plain),
    ("node_memory_Cached_bytes", Shape::Plain),
    ("node_memory_SwapFree_bytes", Shape::Plain),
    ("node_memory_Dirty_bytes", Shape::Plain),
    ("node_memory_Slab_bytes", Shape::Plain),
    ("node_disk_read_bytes_total", Shape::Disk),
    ("node_disk_written_bytes_total", Shape::Disk),
    ("node_disk_reads_completed_total", Shape::Disk),
    ("node_disk_writes_completed_total", Shape::Disk),
    ("node_disk_io_time_seconds_total", Shape::Disk),
    ("node_disk_read_time_seconds_total", Shape::Disk),
    ("node_disk_write_time_seconds_total", Shape::Disk),
    ("node_network_receive_bytes_total", Shape::Net),
    ("node_network_transmit_bytes_total", Shape::Net),
    ("node_network_receive_packets_total", Shape::Net),
    ("node_network_transmit_packets_total", Shape::Net),
    ("node_network_receive_errs_total", Shape::Net),
    ("node_network_transmit_errs_total", Shape::Net),
    ("node_network_receive_drop_total", Shape::Net),
    ("node_filesystem_avail_bytes", Shape::Filesystem),
    ("node_filesystem_size_bytes", Shape::Filesystem),
    ("node_filesystem_free_bytes", Shape::Filesystem),
    ("node_filesystem_files", Shape::Filesystem),
    ("node_filesystem_files_free", Shape::Filesystem),
    ("node_context_switches_total", Shape::Plain),
    ("node_intr_total", Shape::Plain),
    ("node_forks_total", Shape::Plain),
    ("node_procs_running", Shape::Plain),
    ("node_procs_blocked", Shape::Plain),
    ("node_boot_time_seconds", Shape::Plain),
    ("node_time_seconds", Shape::Plain),
    ("node_entropy_available_bits", Shape::Plain),
    ("process_cpu_seconds_total", Shape::Plain),
    ("process_resident_memory_bytes", Shape::Plain),
    ("process_open_fds", Shape::Plain),
    ("http_requests_total", Shape::Http),
    ("http_request_duration_seconds_sum", Shape::Http),
    ("http_request_duration_seconds_count", Shape::Http),
    ("http_response_size_bytes_sum", Shape::Http),
    ("grpc_server_handled_total", Shape::Grpc),
    ("grpc_server_started_total", Shape::Grpc),
    ("go_goroutines", Shape::Plain),
    ("go_memstats_heap_inuse_bytes", Shape::Plain),
];

/// Number of distinct metric names used.
pub const METRIC_NAMES: usize = FAMILIES.len();

const MODES: [&str; 8] = [
    "user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice",
];
const DISKS: [&str; 4] = ["sda", "sdb", "nvme0n1", "nvme1n1"];
const NICS: [&str; 3] = ["eth0", "eth1", "lo"];
const FILESYSTEMS: [(&str, &str, &str); 4] = [
    ("/dev/sda1", "/", "ext4"),
    ("/dev/sda2", "/var", "ext4"),
    ("/dev/nvme0n1p1", "/data", "xfs"),
    ("tmpfs", "/run", "tmpfs"),
];
const METHODS: [&str; 2] = ["GET", "POST"];
const CODES: [&str; 3] = ["200", "404", "500"];
const HANDLERS: [&str; 3] = ["/api/v1/query", "/api/v1/write", "/metrics"];
const GRPC_METHODS: [&str; 4] = ["Export", "Query", "Watch", "Health"];
const GRPC_CODES: [&str; 2] = ["OK", "Unavailable"];
const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "ap-south-1"];

fn owned(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(n, v)| (*n, (*v).to_string())).collect()
}

fn combos(shape: Shape) -> Vec<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    match shape {
        Shape::Plain => out.push(Vec::new()),
        Shape::CpuMode => {
            for cpu in 0..4 {
                for mode in MODES {
                    out.push(owned(&[("cpu", &cpu.to_string()), ("mode", mode)]));
                }
            }
        }
        Shape::Cpu => {
            for cpu in 0..4 {
                out.push(owned(&[("cpu", &cpu.to_string()), ("package", "0")]));
            }
        }
        Shape::Disk => {
            for d in DISKS {
                out.push(owned(&[("device", d)]));
            }
        }
        Shape::Net => {
            for d in NICS {
                out.push(owned(&[("device", d)]));
            }
        }
        Shape::Filesystem => {
            for (d, m, t) in FILESYSTEMS {
                out.push(owned(&[("device", d), ("mountpoint", m), ("fstype", t)]));
            }
        }
        Shape::Http => {
            for m in METHODS {
                for c in CODES {
                    for h in HANDLERS {
                        out.push(owned(&[("method", m), ("code", c), ("handler", h)]));
                    }
                }
            }
        }
        Shape::Grpc => {
            for m in GRPC_METHODS {
                for c in GRPC_CODES {
                    out.push(owned(&[("grpc_method", m), ("grpc_code", c)]));
                }
            }
        }
    }
    out
}

/// SplitMix64: a cheap, well-mixed per-series seed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn kind_of(name: &str) -> Kind {
    if ["_total", "_sum", "_count"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        Kind::Counter
    } else {
        Kind::Gauge
    }
}

/// The per-host template: `(metric, family labels)` for every series of one host.
fn host_template() -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let mut out = Vec::new();
    for (name, shape) in FAMILIES {
        for attrs in combos(*shape) {
            out.push((*name, attrs));
        }
    }
    out
}

/// Series per host.
pub fn series_per_host() -> usize {
    host_template().len()
}

/// The first `n` series, host by host. Every series is distinct.
pub fn generate(n: usize) -> Vec<SeriesDef> {
    let template = host_template();
    let mut out = Vec::with_capacity(n);
    let mut host = 0usize;
    while out.len() < n {
        let region = REGIONS[host % REGIONS.len()];
        let env = if host % 5 == 4 { "staging" } else { "prod" };
        for (name, attrs) in &template {
            if out.len() == n {
                break;
            }
            let (job, port) = if name.starts_with("node_") {
                ("node", 9100)
            } else {
                ("api", 8080)
            };
            let resource = vec![
                ("job", job.to_string()),
                (
                    "instance",
                    format!("host-{host:05}.example.internal:{port}"),
                ),
                ("region", region.to_string()),
                ("env", env.to_string()),
            ];
            out.push(SeriesDef {
                name,
                resource,
                attributes: attrs.clone(),
                kind: kind_of(name),
                seed: mix(out.len() as u64),
            });
        }
        host += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn series_are_distinct_and_realistic() {
        assert!(
            (45..=55).contains(&METRIC_NAMES),
            "{METRIC_NAMES} metric names"
        );
        let all = generate(2_000);
        assert_eq!(all.len(), 2_000);
        let sets: HashSet<Vec<(String, String)>> =
            all.iter().map(SeriesDef::prometheus_labels).collect();
        assert_eq!(sets.len(), all.len(), "label sets must be unique");
        let mean = all
            .iter()
            .map(|s| s.prometheus_labels().len())
            .sum::<usize>() as f64
            / all.len() as f64;
        assert!((5.5..=7.5).contains(&mean), "mean labels per series {mean}");
        assert!(series_per_host() > 200);
    }

    #[test]
    fn counters_never_decrease() {
        for s in generate(300).iter().filter(|s| s.kind == Kind::Counter) {
            let mut prev = f64::MIN;
            for r in 0..50 {
                let v = s.value(r);
                assert!(v >= prev && v.is_finite());
                prev = v;
            }
        }
    }
}
