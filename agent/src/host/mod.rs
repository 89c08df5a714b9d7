//! Host metrics read straight from procfs and `statvfs`, named like the OpenTelemetry
//! Collector's host metrics receiver (`system.cpu.utilization{state}`,
//! `system.filesystem.usage{device,mode,mountpoint,type,state}`, …).
//!
//! Why not `sysinfo`: it refreshes far more than we report (every process with its command
//! line and environment, users, components) and keeps it all in memory, which costs more RSS
//! and CPU than the whole agent may use. Reading the handful of procfs files directly is a few
//! syscalls per interval.

pub(crate) mod procfs;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{Metric, NumberDataPoint};
use presage_config::HostConfig;

use crate::otlp::{gauge, kv, point, sum};
use procfs::{CpuTimes, Mount};

/// Collects host metrics; keeps the previous CPU reading to turn jiffies into utilisation.
pub(crate) struct HostCollector {
    cfg: HostConfig,
    prev_total: Option<CpuTimes>,
    prev_per_cpu: HashMap<String, CpuTimes>,
    warned: HashSet<String>,
}

impl HostCollector {
    /// A collector; takes a first CPU reading so the first collection already has
    /// utilisation.
    pub(crate) fn new(cfg: HostConfig) -> Self {
        let mut c = Self {
            cfg,
            prev_total: None,
            prev_per_cpu: HashMap::new(),
            warned: HashSet::new(),
        };
        if let Ok(text) = std::fs::read_to_string(c.proc("stat")) {
            let stat = procfs::parse_stat(&text);
            c.prev_total = Some(stat.total);
            c.prev_per_cpu = stat.per_cpu.into_iter().collect();
        }
        c
    }

    fn proc(&self, file: &str) -> PathBuf {
        self.cfg.proc.join(file)
    }

    fn read(&mut self, file: &str) -> Option<String> {
        let path = self.proc(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) => {
                if self.warned.insert(file.to_string()) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read; its metrics are skipped");
                }
                None
            }
        }
    }

    /// One reading of every host metric, stamped `now_ns`.
    pub(crate) fn collect(&mut self, now_ns: u64) -> Vec<Metric> {
        let mut out = Vec::new();
        let mut boot_ns = 0;
        if let Some(text) = self.read("stat") {
            let stat = procfs::parse_stat(&text);
            boot_ns = stat.boot_time.saturating_mul(1_000_000_000);
            self.cpu(&stat, now_ns, &mut out);
            let pts = self.processes(&stat, now_ns);
            out.push(sum(
                "system.processes.count",
                "{processes}",
                "Processes by status.",
                false,
                pts,
            ));
            out.push(sum(
                "system.processes.created",
                "{processes}",
                "Processes created since boot.",
                true,
                vec![point(
                    vec![],
                    now_ns,
                    boot_ns,
                    stat.processes_created as f64,
                )],
            ));
        }
        if let Some(text) = self.read("loadavg")
            && let Some(load) = procfs::parse_loadavg(&text)
        {
            for (name, v) in [("1m", load[0]), ("5m", load[1]), ("15m", load[2])] {
                out.push(gauge(
                    &format!("system.cpu.load_average.{name}"),
                    "{thread}",
                    "Load average.",
                    vec![point(vec![], now_ns, 0, v)],
                ));
            }
        }
        if let Some(text) = self.read("meminfo") {
            memory(&procfs::parse_meminfo(&text), now_ns, &mut out);
        }
        if let Some(text) = self.read("self/mountinfo") {
            self.filesystems(&procfs::parse_mountinfo(&text), now_ns, &mut out);
        }
        if let Some(text) = self.read("diskstats") {
            self.disks(&procfs::parse_diskstats(&text), now_ns, boot_ns, &mut out);
        }
        if let Some(text) = self.read("net/dev") {
            self.network(&procfs::parse_net_dev(&text), now_ns, boot_ns, &mut out);
        }
        out
    }

    fn cpu(&mut self, stat: &procfs::Stat, now_ns: u64, out: &mut Vec<Metric>) {
        let mut pts = Vec::new();
        if self.cfg.per_cpu {
            for (cpu, times) in &stat.per_cpu {
                if let Some(prev) = self.prev_per_cpu.get(cpu)
                    && let Some(u) = times.utilization(prev)
                {
                    for (state, v) in u {
                        pts.push(point(
                            vec![kv("cpu", cpu.as_str()), kv("state", state)],
                            now_ns,
                            0,
                            v,
                        ));
                    }
                }
            }
        } else if let Some(prev) = &self.prev_total
            && let Some(u) = stat.total.utilization(prev)
        {
            for (state, v) in u {
                pts.push(point(vec![kv("state", state)], now_ns, 0, v));
            }
        }
        self.prev_total = Some(stat.total);
        self.prev_per_cpu = stat.per_cpu.iter().cloned().collect();
        if !pts.is_empty() {
            out.push(gauge(
                "system.cpu.utilization",
                "1",
                "Share of CPU time spent in each state since the previous collection, across all CPUs.",
                pts,
            ));
        }
    }

    fn processes(&mut self, stat: &procfs::Stat, now_ns: u64) -> Vec<NumberDataPoint> {
        let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        let dir = self.cfg.proc.clone();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    if !name.bytes().all(|b| b.is_ascii_digit()) {
                        continue;
                    }
                    // A process may exit between the listing and the read: skip it.
                    if let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) {
                        *counts.entry(procfs::process_status(&text)).or_default() += 1;
                    }
                }
            }
            Err(e) => {
                if self.warned.insert("proc dir".into()) {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot list processes");
                }
            }
        }
        // The kernel's own counters are exact at one instant; prefer them.
        counts.insert("running", stat.procs_running);
        counts.insert("blocked", stat.procs_blocked);
        counts
            .into_iter()
            .map(|(status, n)| point(vec![kv("status", status)], now_ns, 0, n as f64))
            .collect()
    }

    fn filesystems(&mut self, mounts: &[Mount], now_ns: u64, out: &mut Vec<Metric>) {
        // The last mount on a mount point is the visible one.
        let mut visible: BTreeMap<&str, &Mount> = BTreeMap::new();
        for m in mounts {
            if self.cfg.exclude_filesystem_types.contains(&m.fs_type)
                || excluded_mount_point(&m.mount_point, &self.cfg.exclude_mount_points)
            {
                continue;
            }
            visible.insert(&m.mount_point, m);
        }
        let (mut usage, mut util, mut inodes) = (Vec::new(), Vec::new(), Vec::new());
        for (mount_point, m) in visible {
            let path = under_root(&self.cfg.root, mount_point);
            let st = match rustix::fs::statvfs(&path) {
                Ok(st) => st,
                Err(e) => {
                    if self.warned.insert(format!("statvfs {mount_point}")) {
                        tracing::debug!(path = %path.display(), error = %e, "statvfs failed; file system skipped");
                    }
                    continue;
                }
            };
            if st.f_blocks == 0 {
                continue; // pseudo file systems report no blocks
            }
            let frsize = if st.f_frsize > 0 {
                st.f_frsize
            } else {
                st.f_bsize
            };
            let total = st.f_blocks.saturating_mul(frsize);
            let free = st.f_bfree.saturating_mul(frsize);
            let avail = st.f_bavail.saturating_mul(frsize).min(free);
            let used = total.saturating_sub(free);
            let attrs = || {
                vec![
                    kv("device", m.device.as_str()),
                    kv("mode", if m.read_only { "ro" } else { "rw" }),
                    kv("mountpoint", mount_point),
                    kv("type", m.fs_type.as_str()),
                ]
            };
            for (state, v) in [("used", used), ("free", avail), ("reserved", free - avail)] {
                let mut a = attrs();
                a.push(kv("state", state));
                usage.push(point(a, now_ns, 0, v as f64));
            }
            if used + avail > 0 {
                util.push(point(
                    attrs(),
                    now_ns,
                    0,
                    used as f64 / (used + avail) as f64,
                ));
            }
            if st.f_files > 0 {
                let ifree = st.f_ffree.min(st.f_files);
                for (state, v) in [("used", st.f_files - ifree), ("free", ifree)] {
                    let mut a = attrs();
                    a.push(kv("state", state));
                    inodes.push(point(a, now_ns, 0, v as f64));
                }
            }
        }
        if !usage.is_empty() {
            out.push(sum(
                "system.filesystem.usage",
                "By",
                "File system space by state (free is what unprivileged users may still use).",
                false,
                usage,
            ));
        }
        if !util.is_empty() {
            out.push(gauge(
                "system.filesystem.utilization",
                "1",
                "Used share of the space available to unprivileged users, as df reports it.",
                util,
            ));
        }
        if !inodes.is_empty() {
            out.push(sum(
                "system.filesystem.inodes.usage",
                "{inodes}",
                "File system inodes by state.",
                false,
                inodes,
            ));
        }
    }

    fn disks(&self, disks: &[procfs::DiskStats], now_ns: u64, boot_ns: u64, out: &mut Vec<Metric>) {
        let (mut io, mut ops, mut time) = (Vec::new(), Vec::new(), Vec::new());
        for d in disks {
            if procfs::is_partition(&d.name)
                || self
                    .cfg
                    .exclude_disks
                    .iter()
                    .any(|p| d.name.starts_with(p.as_str()))
            {
                continue;
            }
            let attrs = |dir: &str| vec![kv("device", d.name.as_str()), kv("direction", dir)];
            // diskstats counts 512-byte sectors whatever the device's block size.
            io.push(point(
                attrs("read"),
                now_ns,
                boot_ns,
                (d.sectors_read * 512) as f64,
            ));
            io.push(point(
                attrs("write"),
                now_ns,
                boot_ns,
                (d.sectors_written * 512) as f64,
            ));
            ops.push(point(attrs("read"), now_ns, boot_ns, d.reads as f64));
            ops.push(point(attrs("write"), now_ns, boot_ns, d.writes as f64));
            time.push(point(
                vec![kv("device", d.name.as_str())],
                now_ns,
                boot_ns,
                d.io_time_ms as f64 / 1000.0,
            ));
        }
        if io.is_empty() {
            return;
        }
        out.push(sum(
            "system.disk.io",
            "By",
            "Disk bytes transferred.",
            true,
            io,
        ));
        out.push(sum(
            "system.disk.operations",
            "{operations}",
            "Disk operations completed.",
            true,
            ops,
        ));
        out.push(sum(
            "system.disk.io_time",
            "s",
            "Time the disk spent with I/O in progress.",
            true,
            time,
        ));
    }

    fn network(&self, devs: &[procfs::NetDev], now_ns: u64, boot_ns: u64, out: &mut Vec<Metric>) {
        let mut series: [(&str, &str, &str, Vec<NumberDataPoint>); 4] = [
            (
                "system.network.io",
                "By",
                "Bytes sent and received.",
                Vec::new(),
            ),
            (
                "system.network.packets",
                "{packets}",
                "Packets sent and received.",
                Vec::new(),
            ),
            (
                "system.network.errors",
                "{errors}",
                "Packets with errors.",
                Vec::new(),
            ),
            (
                "system.network.dropped",
                "{packets}",
                "Packets dropped.",
                Vec::new(),
            ),
        ];
        for d in devs {
            if self.cfg.exclude_network_interfaces.contains(&d.name) {
                continue;
            }
            let attrs = |dir: &str| -> Vec<KeyValue> {
                vec![kv("device", d.name.as_str()), kv("direction", dir)]
            };
            let values = [
                (d.rx_bytes, d.tx_bytes),
                (d.rx_packets, d.tx_packets),
                (d.rx_errors, d.tx_errors),
                (d.rx_dropped, d.tx_dropped),
            ];
            for ((_, _, _, pts), (rx, tx)) in series.iter_mut().zip(values) {
                pts.push(point(attrs("receive"), now_ns, boot_ns, rx as f64));
                pts.push(point(attrs("transmit"), now_ns, boot_ns, tx as f64));
            }
        }
        for (name, unit, desc, pts) in series {
            if !pts.is_empty() {
                out.push(sum(name, unit, desc, true, pts));
            }
        }
    }
}

fn memory(m: &procfs::MemInfo, now_ns: u64, out: &mut Vec<Metric>) {
    if m.total == 0 {
        return;
    }
    let states = m.states();
    out.push(sum(
        "system.memory.usage",
        "By",
        "Memory by state.",
        false,
        states
            .iter()
            .map(|(s, v)| point(vec![kv("state", *s)], now_ns, 0, *v as f64))
            .collect(),
    ));
    out.push(gauge(
        "system.memory.utilization",
        "1",
        "Share of memory by state.",
        states
            .iter()
            .map(|(s, v)| point(vec![kv("state", *s)], now_ns, 0, *v as f64 / m.total as f64))
            .collect(),
    ));
    out.push(sum(
        "system.memory.limit",
        "By",
        "Total memory.",
        false,
        vec![point(vec![], now_ns, 0, m.total as f64)],
    ));
    let swap_used = m.swap_total.saturating_sub(m.swap_free);
    out.push(sum(
        "system.paging.usage",
        "By",
        "Swap space by state.",
        false,
        vec![
            point(vec![kv("state", "used")], now_ns, 0, swap_used as f64),
            point(vec![kv("state", "free")], now_ns, 0, m.swap_free as f64),
        ],
    ));
    if m.swap_total > 0 {
        out.push(gauge(
            "system.paging.utilization",
            "1",
            "Share of swap space by state.",
            vec![
                point(
                    vec![kv("state", "used")],
                    now_ns,
                    0,
                    swap_used as f64 / m.swap_total as f64,
                ),
                point(
                    vec![kv("state", "free")],
                    now_ns,
                    0,
                    m.swap_free as f64 / m.swap_total as f64,
                ),
            ],
        ));
    }
}

/// Whether `mount_point` is one of `excluded` or beneath one of them.
fn excluded_mount_point(mount_point: &str, excluded: &[String]) -> bool {
    excluded.iter().any(|e| {
        let e = e.trim_end_matches('/');
        if e.is_empty() {
            return mount_point == "/";
        }
        mount_point == e
            || mount_point
                .strip_prefix(e)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

fn under_root(root: &Path, mount_point: &str) -> PathBuf {
    root.join(mount_point.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;

    #[test]
    fn mount_point_exclusion_matches_whole_path_components() {
        let ex = vec!["/proc".to_string(), "/var/lib/docker/".to_string()];
        assert!(excluded_mount_point("/proc", &ex));
        assert!(excluded_mount_point("/proc/sys/fs/binfmt_misc", &ex));
        assert!(!excluded_mount_point("/processing", &ex));
        assert!(excluded_mount_point(
            "/var/lib/docker/overlay2/x/merged",
            &ex
        ));
        assert!(!excluded_mount_point("/", &ex));
        assert!(!excluded_mount_point("/var", &ex));
    }

    #[test]
    fn root_prefix() {
        assert_eq!(under_root(Path::new("/"), "/var"), PathBuf::from("/var"));
        assert_eq!(
            under_root(Path::new("/host/root"), "/"),
            PathBuf::from("/host/root/")
        );
        assert_eq!(
            under_root(Path::new("/host/root"), "/var/log"),
            PathBuf::from("/host/root/var/log")
        );
    }

    fn names(metrics: &[Metric]) -> Vec<&str> {
        metrics.iter().map(|m| m.name.as_str()).collect()
    }

    fn write(dir: &Path, file: &str, text: &str) {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A fake procfs: the collector reads only the files it is pointed at.
    #[test]
    fn collects_from_a_fake_procfs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        write(
            p,
            "stat",
            "cpu  100 0 50 850 0 0 0 0 0 0\nbtime 1700000000\nprocesses 10\nprocs_running 2\nprocs_blocked 0\n",
        );
        write(p, "loadavg", "0.5 0.25 0.125 1/10 99\n");
        write(
            p,
            "meminfo",
            "MemTotal: 1000 kB\nMemFree: 500 kB\nBuffers: 0 kB\nCached: 100 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        );
        // The root file system is the temp dir itself (so statvfs works); /proc is skipped.
        let root = p.join("root");
        std::fs::create_dir_all(&root).unwrap();
        write(
            p,
            "self/mountinfo",
            "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:3 / /proc rw - proc proc rw\n",
        );
        write(
            p,
            "diskstats",
            "8 0 sda 10 0 80 0 20 0 160 0 0 5000 0\n8 1 sda1 10 0 80 0 20 0 160 0 0 5000 0\n",
        );
        write(
            p,
            "net/dev",
            "h\nh\n lo: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\neth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n",
        );
        write(p, "1/stat", "1 (init) S 0");
        write(p, "22/stat", "22 (zombie) Z 1");

        let cfg = HostConfig {
            proc: p.to_path_buf(),
            root: root.clone(),
            ..HostConfig::default()
        };
        let mut c = HostCollector::new(cfg);
        // The second reading of /proc/stat: 100 more jiffies, 40 of them user.
        write(
            p,
            "stat",
            "cpu  140 0 50 910 0 0 0 0 0 0\nbtime 1700000000\nprocesses 12\nprocs_running 1\nprocs_blocked 0\n",
        );
        let m = c.collect(42);
        assert_eq!(
            names(&m),
            vec![
                "system.cpu.utilization",
                "system.processes.count",
                "system.processes.created",
                "system.cpu.load_average.1m",
                "system.cpu.load_average.5m",
                "system.cpu.load_average.15m",
                "system.memory.usage",
                "system.memory.utilization",
                "system.memory.limit",
                "system.paging.usage",
                "system.filesystem.usage",
                "system.filesystem.utilization",
                "system.filesystem.inodes.usage",
                "system.disk.io",
                "system.disk.operations",
                "system.disk.io_time",
                "system.network.io",
                "system.network.packets",
                "system.network.errors",
                "system.network.dropped",
            ]
        );
        let Some(Data::Gauge(cpu)) = &m[0].data else {
            panic!("cpu is a gauge")
        };
        let user = cpu
            .data_points
            .iter()
            .find(|p| p.attributes[0] == kv("state", "user"))
            .unwrap();
        assert_eq!(
            user.value,
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(0.4))
        );
        assert_eq!(user.time_unix_nano, 42);
        // Processes: the listing's sleeping and zombie plus the kernel's running count.
        let Some(Data::Sum(procs)) = &m[1].data else {
            panic!("a sum")
        };
        let statuses: Vec<String> = procs
            .data_points
            .iter()
            .map(|p| format!("{:?}", p.attributes[0].value))
            .collect();
        assert_eq!(statuses.len(), 4, "{statuses:?}");
        // The file system at / (the temp dir) with its attributes; /proc is excluded.
        let Some(Data::Gauge(fs)) = &m[11].data else {
            panic!("a gauge")
        };
        assert_eq!(fs.data_points.len(), 1);
        assert!(
            fs.data_points[0]
                .attributes
                .contains(&kv("mountpoint", "/"))
        );
        assert!(
            fs.data_points[0]
                .attributes
                .contains(&kv("device", "/dev/sda1"))
        );
        // Disk: the partition is skipped; bytes are sectors × 512, start time is boot.
        let Some(Data::Sum(io)) = &m[13].data else {
            panic!("a sum")
        };
        assert_eq!(io.data_points.len(), 2);
        assert_eq!(
            io.data_points[0].start_time_unix_nano,
            1_700_000_000_000_000_000
        );
        assert!(io.is_monotonic);
        // Network: lo is excluded by default.
        let Some(Data::Sum(net)) = &m[16].data else {
            panic!("a sum")
        };
        assert_eq!(net.data_points.len(), 2);
        assert!(
            net.data_points[0]
                .attributes
                .contains(&kv("device", "eth0"))
        );
    }

    #[test]
    fn missing_files_skip_their_metrics_only() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "loadavg", "1 2 3 1/1 1\n");
        let cfg = HostConfig {
            proc: dir.path().to_path_buf(),
            ..HostConfig::default()
        };
        let mut c = HostCollector::new(cfg);
        let m = c.collect(1);
        assert_eq!(
            names(&m),
            vec![
                "system.cpu.load_average.1m",
                "system.cpu.load_average.5m",
                "system.cpu.load_average.15m"
            ]
        );
    }
}
