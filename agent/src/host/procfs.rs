//! Parsers for the procfs files the host collector reads. Each takes the file's text, so they
//! are tested on captured samples; a line that does not parse is skipped.

/// Jiffies per CPU state from a `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    pub(crate) user: u64,
    pub(crate) nice: u64,
    pub(crate) system: u64,
    pub(crate) idle: u64,
    pub(crate) iowait: u64,
    pub(crate) irq: u64,
    pub(crate) softirq: u64,
    pub(crate) steal: u64,
}

impl CpuTimes {
    /// `(state attribute, jiffies)` with the OpenTelemetry host metrics' state names. `user`
    /// and `nice` exclude guest time already (the kernel counts guest inside user).
    pub(crate) fn states(&self) -> [(&'static str, u64); 8] {
        [
            ("user", self.user),
            ("nice", self.nice),
            ("system", self.system),
            ("idle", self.idle),
            ("wait", self.iowait),
            ("interrupt", self.irq),
            ("softirq", self.softirq),
            ("steal", self.steal),
        ]
    }

    fn total(&self) -> u64 {
        self.states().iter().map(|(_, v)| v).sum()
    }

    /// Share of each state between two readings; `None` when no time passed.
    pub(crate) fn utilization(&self, prev: &CpuTimes) -> Option<[(&'static str, f64); 8]> {
        let elapsed = self.total().checked_sub(prev.total())?;
        if elapsed == 0 {
            return None;
        }
        let now = self.states();
        let before = prev.states();
        let mut out = [("", 0.0); 8];
        for (i, ((name, v), (_, p))) in now.iter().zip(before.iter()).enumerate() {
            out[i] = (*name, v.saturating_sub(*p) as f64 / elapsed as f64);
        }
        Some(out)
    }
}

/// What `/proc/stat` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Stat {
    /// The aggregate `cpu` line.
    pub(crate) total: CpuTimes,
    /// `cpu0`, `cpu1`, …
    pub(crate) per_cpu: Vec<(String, CpuTimes)>,
    /// Boot time, seconds since the epoch.
    pub(crate) boot_time: u64,
    /// Processes created since boot.
    pub(crate) processes_created: u64,
    /// Runnable processes now.
    pub(crate) procs_running: u64,
    /// Processes blocked on I/O now.
    pub(crate) procs_blocked: u64,
}

pub(crate) fn parse_stat(text: &str) -> Stat {
    let mut out = Stat::default();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        if key.starts_with("cpu") {
            let v: Vec<u64> = fields.map(|f| f.parse().unwrap_or(0)).collect();
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            // user nice system idle iowait irq softirq steal guest guest_nice
            let times = CpuTimes {
                user: get(0).saturating_sub(get(8)),
                nice: get(1).saturating_sub(get(9)),
                system: get(2),
                idle: get(3),
                iowait: get(4),
                irq: get(5),
                softirq: get(6),
                steal: get(7),
            };
            if key == "cpu" {
                out.total = times;
            } else {
                out.per_cpu.push((key.to_string(), times));
            }
            continue;
        }
        let value = fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
        match key {
            "btime" => out.boot_time = value,
            "processes" => out.processes_created = value,
            "procs_running" => out.procs_running = value,
            "procs_blocked" => out.procs_blocked = value,
            _ => {}
        }
    }
    out
}

/// `/proc/meminfo` in bytes, by field name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MemInfo {
    pub(crate) total: u64,
    pub(crate) free: u64,
    pub(crate) available: Option<u64>,
    pub(crate) buffers: u64,
    pub(crate) cached: u64,
    pub(crate) slab_reclaimable: u64,
    pub(crate) slab_unreclaimable: u64,
    pub(crate) swap_total: u64,
    pub(crate) swap_free: u64,
}

impl MemInfo {
    /// `(state, bytes)` as the OpenTelemetry host metrics report memory on Linux: `used` is
    /// what is left after free, buffers, page cache and reclaimable slab.
    pub(crate) fn states(&self) -> [(&'static str, u64); 6] {
        let used = self
            .total
            .saturating_sub(self.free)
            .saturating_sub(self.buffers)
            .saturating_sub(self.cached)
            .saturating_sub(self.slab_reclaimable)
            .saturating_sub(self.slab_unreclaimable);
        [
            ("used", used),
            ("free", self.free),
            ("buffered", self.buffers),
            ("cached", self.cached),
            ("slab_reclaimable", self.slab_reclaimable),
            ("slab_unreclaimable", self.slab_unreclaimable),
        ]
    }
}

pub(crate) fn parse_meminfo(text: &str) -> MemInfo {
    let mut m = MemInfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(n) = parts.next().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        let bytes = match parts.next() {
            Some("kB") => n.saturating_mul(1024),
            _ => n,
        };
        match key {
            "MemTotal" => m.total = bytes,
            "MemFree" => m.free = bytes,
            "MemAvailable" => m.available = Some(bytes),
            "Buffers" => m.buffers = bytes,
            "Cached" => m.cached = bytes,
            "SReclaimable" => m.slab_reclaimable = bytes,
            "SUnreclaim" => m.slab_unreclaimable = bytes,
            "SwapTotal" => m.swap_total = bytes,
            "SwapFree" => m.swap_free = bytes,
            _ => {}
        }
    }
    m
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_ascii_whitespace().map(|f| f.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub(crate) device: String,
    pub(crate) mount_point: String,
    pub(crate) fs_type: String,
    pub(crate) read_only: bool,
}

/// Parses `mountinfo`; octal escapes (`\040` for a space) are decoded.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        let (Some(mount_point), Some(options)) = (left.get(4), left.get(5)) else {
            continue;
        };
        let (Some(fs_type), Some(source)) = (right.next(), right.next()) else {
            continue;
        };
        out.push(Mount {
            device: unescape_octal(source),
            mount_point: unescape_octal(mount_point),
            fs_type: fs_type.to_string(),
            read_only: options.split(',').any(|o| o == "ro"),
        });
    }
    out
}

fn unescape_octal(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One device of `/proc/diskstats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DiskStats {
    pub(crate) name: String,
    pub(crate) reads: u64,
    pub(crate) sectors_read: u64,
    pub(crate) writes: u64,
    pub(crate) sectors_written: u64,
    pub(crate) io_time_ms: u64,
}

pub(crate) fn parse_diskstats(text: &str) -> Vec<DiskStats> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            if f.len() < 14 {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
            Some(DiskStats {
                name: f[2].to_string(),
                reads: n(3),
                sectors_read: n(5),
                writes: n(7),
                sectors_written: n(9),
                io_time_ms: n(12),
            })
        })
        .collect()
}

/// Whether a block device name is a partition of another device (`sda1`, `nvme0n1p2`,
/// `mmcblk0p1`), whose I/O the whole disk already counts.
pub(crate) fn is_partition(name: &str) -> bool {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() == name.len() {
        return false;
    }
    if let Some(base) = trimmed.strip_suffix('p') {
        // nvme0n1p2, mmcblk0p1: the base ends with a digit.
        return (base.starts_with("nvme") || base.starts_with("mmcblk"))
            && base.ends_with(|c: char| c.is_ascii_digit());
    }
    // sda1, vdb2, xvda1, hda3
    ["sd", "vd", "xvd", "hd"]
        .iter()
        .any(|p| trimmed.starts_with(p) && trimmed.len() > p.len())
}

/// One interface of `/proc/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetDev {
    pub(crate) name: String,
    pub(crate) rx_bytes: u64,
    pub(crate) rx_packets: u64,
    pub(crate) rx_errors: u64,
    pub(crate) rx_dropped: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) tx_packets: u64,
    pub(crate) tx_errors: u64,
    pub(crate) tx_dropped: u64,
}

pub(crate) fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_ascii_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            if f.len() < 12 {
                return None;
            }
            Some(NetDev {
                name: name.trim().to_string(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            })
        })
        .collect()
}

/// The state letter of `/proc/<pid>/stat` as the host metrics' `status` attribute.
pub(crate) fn process_status(stat: &str) -> &'static str {
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_ascii_whitespace().next());
    match state {
        Some("R") => "running",
        Some("S") => "sleeping",
        Some("D") => "blocked",
        Some("Z") => "zombies",
        Some("T" | "t") => "stopped",
        Some("I") => "idle",
        Some("X" | "x") => "dead",
        Some("W") => "paging",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  119426 5 23431 107187 1917 3 171 2078 100 1\n\
cpu0 57156 0 10901 57616 401 0 25 1047 0 0\n\
cpu1 62269 0 12530 49571 1515 0 146 1031 0 0\n\
intr 12345 0 0\n\
ctxt 987654\n\
btime 1700000000\n\
processes 6563\n\
procs_running 3\n\
procs_blocked 1\n";

    #[test]
    fn stat() {
        let s = parse_stat(STAT);
        assert_eq!(s.boot_time, 1_700_000_000);
        assert_eq!(s.processes_created, 6563);
        assert_eq!((s.procs_running, s.procs_blocked), (3, 1));
        assert_eq!(s.per_cpu.len(), 2);
        assert_eq!(s.per_cpu[1].0, "cpu1");
        // Guest time is inside user time: it is taken out.
        assert_eq!(s.total.user, 119_426 - 100);
        assert_eq!(s.total.nice, 4);
        assert_eq!(s.total.steal, 2078);
    }

    #[test]
    fn cpu_utilization_between_two_readings() {
        let a = CpuTimes {
            user: 100,
            idle: 100,
            ..Default::default()
        };
        let b = CpuTimes {
            user: 130,
            system: 10,
            idle: 160,
            ..Default::default()
        };
        let u = b.utilization(&a).unwrap();
        let get = |name: &str| u.iter().find(|(n, _)| *n == name).unwrap().1;
        assert!((get("user") - 0.3).abs() < 1e-12);
        assert!((get("system") - 0.1).abs() < 1e-12);
        assert!((get("idle") - 0.6).abs() < 1e-12);
        assert_eq!(get("wait"), 0.0);
        let total: f64 = u.iter().map(|(_, v)| v).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert_eq!(a.utilization(&a), None);
        // A counter going backwards (CPU hot-unplug) gives no reading rather than nonsense.
        assert_eq!(a.utilization(&b), None);
    }

    #[test]
    fn meminfo() {
        let m = parse_meminfo(
            "MemTotal:       1000 kB\nMemFree:         400 kB\nMemAvailable:    700 kB\nBuffers:          50 kB\nCached:          200 kB\nSReclaimable:     30 kB\nSUnreclaim:       20 kB\nSwapTotal:       100 kB\nSwapFree:         60 kB\nHugePages_Total:  0\n",
        );
        assert_eq!(m.total, 1000 * 1024);
        assert_eq!(m.available, Some(700 * 1024));
        assert_eq!(m.swap_free, 60 * 1024);
        let states = m.states();
        assert_eq!(states[0], ("used", 300 * 1024));
        let sum: u64 = states.iter().map(|(_, v)| v).sum();
        assert_eq!(sum, m.total);
    }

    #[test]
    fn loadavg() {
        assert_eq!(
            parse_loadavg("2.07 2.64 1.61 1/88 6562\n"),
            Some([2.07, 2.64, 1.61])
        );
        assert_eq!(parse_loadavg("garbage"), None);
    }

    #[test]
    fn mountinfo_with_optional_fields_and_escapes() {
        let text = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard\n\
40 27 254:1 / /mnt/my\\040disk ro,relatime shared:7 master:1 - xfs /dev/vdb1 ro\n\
broken line\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[1],
            Mount {
                device: "/dev/vda".into(),
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                read_only: false,
            }
        );
        assert_eq!(m[2].mount_point, "/mnt/my disk");
        assert_eq!(m[2].fs_type, "xfs");
        assert!(m[2].read_only);
    }

    #[test]
    fn diskstats() {
        let d = parse_diskstats(
            " 254       0 vda 96599 8843 6328738 253070 14073 51893 9372192 57413 0 29360 312653 7486 25 1575304 2073 1083 95\n   7 0 loop0 0 0 0 0 0 0 0 0 0 0 0\n",
        );
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0],
            DiskStats {
                name: "vda".into(),
                reads: 96599,
                sectors_read: 6_328_738,
                writes: 14073,
                sectors_written: 9_372_192,
                io_time_ms: 29360,
            }
        );
    }

    #[test]
    fn partitions() {
        for p in ["sda1", "vdb12", "xvda1", "nvme0n1p2", "mmcblk0p1", "hda3"] {
            assert!(is_partition(p), "{p}");
        }
        for d in [
            "sda", "vda", "nvme0n1", "mmcblk0", "dm-0", "md0", "loop0", "zram0",
        ] {
            assert!(!is_partition(d), "{d}");
        }
    }

    #[test]
    fn net_dev() {
        let n = parse_net_dev(
            "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 5436341    1924    0    0    0     0          0         0  5436341    1924    0    0    0     0       0          0\n  eth0: 170812027    6076    2    3    0     0          0         0   426322    3518    4    5    0     0       0          0\n",
        );
        assert_eq!(n.len(), 2);
        assert_eq!(
            n[1],
            NetDev {
                name: "eth0".into(),
                rx_bytes: 170_812_027,
                rx_packets: 6076,
                rx_errors: 2,
                rx_dropped: 3,
                tx_bytes: 426_322,
                tx_packets: 3518,
                tx_errors: 4,
                tx_dropped: 5,
            }
        );
    }

    #[test]
    fn process_states() {
        assert_eq!(process_status("1 (systemd) S 0 1 1"), "sleeping");
        assert_eq!(process_status("42 (my (weird) cmd) R 1 42"), "running");
        assert_eq!(process_status("7 (kworker/0:1) I 2 0"), "idle");
        assert_eq!(process_status("9 (x) Z 1"), "zombies");
        assert_eq!(process_status("garbage"), "unknown");
    }
}
