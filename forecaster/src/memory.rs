//! The process' memory bound (`limits.memory_limit`).
//!
//! Admission control ([`crate::ingest::admission`]) bounds the work in flight; this bounds the
//! whole process. While the resident set is above `memory_limit - memory_spike_limit`, every
//! ingest request is shed before its body is read, and a request still reading its body is cut
//! off; the spike limit is the room left for what requests already admitted still allocate.
//! Queries, probes and `/metrics` are never shed.
//!
//! The resident set is read from `/proc/self/statm` at most every [`READ_EVERY`], by whichever
//! request asks first, so a check otherwise costs a clock read and an atomic load.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use presage_config::{AUTO_MEMORY_SHARE, ByteSize, LimitsConfig, MIN_MEMORY_LIMIT, MemoryLimit};

/// How old a resident-set reading may be before a check reads it again.
pub const READ_EVERY: Duration = Duration::from_millis(2);

/// Crossings of the threshold are logged at most this often, each way: a daemon at its limit
/// crosses it back and forth as requests are stored and their buffers freed.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Cgroup limits at or above this are "unlimited" (cgroup v1 writes `i64::MAX` rounded down
/// to a page).
const UNLIMITED: u64 = 1 << 60;

/// The process' resident set in bytes, from `/proc/self/statm`; `None` where there is none.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(page_size()))
}

fn page_size() -> u64 {
    static SIZE: OnceLock<u64> = OnceLock::new();
    *SIZE.get_or_init(|| {
        // The kernel reports it to every process in its auxiliary vector.
        std::fs::read("/proc/self/auxv")
            .ok()
            .and_then(|auxv| page_size_from_auxv(&auxv))
            .unwrap_or(4096)
    })
}

/// `AT_PAGESZ` (6) of a 64-bit auxiliary vector: pairs of native-endian words.
fn page_size_from_auxv(auxv: &[u8]) -> Option<u64> {
    const AT_PAGESZ: u64 = 6;
    auxv.chunks_exact(16).find_map(|pair| {
        let (key, value) = pair.split_at(8);
        let key = u64::from_ne_bytes(key.try_into().ok()?);
        let value = u64::from_ne_bytes(value.try_into().ok()?);
        (key == AT_PAGESZ && value.is_power_of_two()).then_some(value)
    })
}

/// The memory limit of the cgroup this process runs in, the tightest over its ancestors; `None`
/// when there is none (or no cgroup file system).
pub fn cgroup_memory_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_limit_under(Path::new("/sys/fs/cgroup"), &own)
}

/// [`cgroup_memory_limit`] with the cgroup file system mounted at `root` and `own` the
/// contents of `/proc/self/cgroup`.
fn cgroup_limit_under(root: &Path, own: &str) -> Option<u64> {
    let mut limits = Vec::new();
    for line in own.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if Path::new(path)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            // `..`: a group outside this process' view of the hierarchy.
            continue;
        }
        if controllers.is_empty() {
            // cgroup v2: `memory.max` in the process' group and each ancestor's.
            limits.extend(
                ancestors(&root.join(path), root)
                    .filter_map(|dir| read_limit(&dir.join("memory.max"))),
            );
        } else if controllers.split(',').any(|c| c == "memory") {
            // cgroup v1. Inside a container the group's path may not exist in the container's
            // view of the mount, whose root is then the container's own group.
            let mount = root.join("memory");
            limits.extend(
                ancestors(&mount.join(path), &mount)
                    .filter_map(|dir| read_limit(&dir.join("memory.limit_in_bytes"))),
            );
        }
    }
    limits.into_iter().min()
}

/// `dir` and its parents up to `root`, both included.
fn ancestors<'a>(dir: &'a Path, root: &'a Path) -> impl Iterator<Item = PathBuf> + 'a {
    dir.ancestors()
        .take_while(move |d| d.starts_with(root))
        .map(Path::to_path_buf)
}

fn read_limit(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let limit: u64 = text.trim().parse().ok()?; // `max` in cgroup v2: no limit
    (limit < UNLIMITED).then_some(limit)
}

/// Where the configured limit came from, for the startup log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// `limits.memory_limit` is a size.
    Configured,
    /// `"auto"`, from a container limit of this many bytes.
    Container(u64),
}

/// Resolves `limits.memory_limit` to a byte count and its source; `None` when there is no
/// bound. `container` is the cgroup limit, if any.
pub fn resolve_limit(limits: &LimitsConfig, container: Option<u64>) -> Option<(u64, LimitSource)> {
    match limits.memory_limit {
        MemoryLimit::None => None,
        MemoryLimit::Fixed(size) => Some((size.bytes(), LimitSource::Configured)),
        MemoryLimit::Auto => {
            let container = container?;
            Some((
                (container as f64 * AUTO_MEMORY_SHARE) as u64,
                LimitSource::Container(container),
            ))
        }
    }
}

/// Watches the resident set against the limit.
pub struct MemoryGuard {
    limit: u64,
    shed_above: u64,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last reading; `u64::MAX` before the first.
    read_at: AtomicU64,
    resident: AtomicU64,
    /// Taken by the one caller reading the resident set, so readings land in order.
    refreshing: AtomicBool,
    shedding: AtomicBool,
    /// Crossings since the last one logged, and when each way was last logged (nanoseconds
    /// after `epoch`, `u64::MAX` before the first).
    crossings: AtomicU64,
    logged_up: AtomicU64,
    logged_down: AtomicU64,
    read: fn() -> Option<u64>,
}

impl MemoryGuard {
    /// Keeps the process within `limit` bytes, shedding above `shed_above`.
    pub fn new(limit: u64, shed_above: u64) -> Self {
        Self::with_reader(limit, shed_above, resident_bytes)
    }

    fn with_reader(limit: u64, shed_above: u64, read: fn() -> Option<u64>) -> Self {
        Self {
            limit,
            shed_above,
            epoch: Instant::now(),
            read_at: AtomicU64::new(u64::MAX),
            resident: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            shedding: AtomicBool::new(false),
            crossings: AtomicU64::new(0),
            logged_up: AtomicU64::new(u64::MAX),
            logged_down: AtomicU64::new(u64::MAX),
            read,
        }
    }

    /// The guard `limits` asks for, or `None` without a bound (or where the resident set
    /// cannot be read). Logs what was chosen.
    pub fn from_config(limits: &LimitsConfig) -> Result<Option<Self>, String> {
        let container = (limits.memory_limit != MemoryLimit::None)
            .then(cgroup_memory_limit)
            .flatten();
        let Some((limit, source)) = resolve_limit(limits, container) else {
            if limits.memory_spike_limit.is_some() {
                tracing::warn!(
                    "limits.memory_spike_limit is set but there is no memory limit: \
                     limits.memory_limit is \"auto\" and this process' cgroup has none"
                );
            }
            return Ok(None);
        };
        if let LimitSource::Container(container) = source
            && limit < MIN_MEMORY_LIMIT.bytes()
        {
            return Err(format!(
                "limits.memory_limit = \"auto\" gives {} ({}% of the cgroup's limit of {}), \
                 under the {MIN_MEMORY_LIMIT} the daemon needs; give the container more memory, \
                 or set limits.memory_limit to a size or \"none\"",
                ByteSize(limit),
                (AUTO_MEMORY_SHARE * 100.0).round(),
                ByteSize(container)
            ));
        }
        let (limit, shed_above) = limits.memory_bounds(limit)?;
        if let (LimitSource::Configured, Some(container)) = (source, container)
            && limit >= container
        {
            tracing::warn!(
                limit,
                container,
                "limits.memory_limit is at or above this process' cgroup memory limit: the \
                 kernel may stop the daemon before it sheds ingest"
            );
        }
        let Some(resident) = resident_bytes() else {
            tracing::warn!(
                limit,
                "limits.memory_limit is set but this system does not report the resident \
                 memory of a process (/proc/self/statm); it is not enforced"
            );
            return Ok(None);
        };
        if resident >= shed_above {
            tracing::warn!(
                resident,
                shed_above,
                "the daemon already uses more memory than limits.memory_limit minus \
                 limits.memory_spike_limit: every ingest request will be shed"
            );
        }
        match source {
            LimitSource::Configured => tracing::info!(
                limit,
                shed_above,
                "memory limit: ingest is shed while resident memory is above shed_above bytes"
            ),
            LimitSource::Container(container) => tracing::info!(
                limit,
                shed_above,
                container,
                "memory limit from the container's ({}% of it): ingest is shed while resident \
                 memory is above shed_above bytes",
                (AUTO_MEMORY_SHARE * 100.0).round()
            ),
        }
        Ok(Some(Self::new(limit, shed_above)))
    }

    /// The bound, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The resident set above which ingest is shed, in bytes.
    pub fn shed_above(&self) -> u64 {
        self.shed_above
    }

    /// Whether the process is above the shedding threshold, from a reading at most
    /// [`READ_EVERY`] old.
    pub fn over(&self) -> bool {
        let now = self.nanos();
        let last = self.read_at.load(Ordering::Acquire);
        let stale = last == u64::MAX || now.saturating_sub(last) >= READ_EVERY.as_nanos() as u64;
        // One caller reads; the others use the reading it is about to replace.
        if stale
            && self
                .refreshing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.read_at.store(now, Ordering::Release);
            self.refresh(now);
            self.refreshing.store(false, Ordering::Release);
        }
        self.resident.load(Ordering::Acquire) > self.shed_above
    }

    fn refresh(&self, now: u64) {
        let Some(resident) = (self.read)() else {
            return;
        };
        self.resident.store(resident, Ordering::Release);
        let over = resident > self.shed_above;
        if self.shedding.swap(over, Ordering::AcqRel) == over {
            return;
        }
        let crossings = self.crossings.fetch_add(1, Ordering::AcqRel) + 1;
        let logged = if over {
            &self.logged_up
        } else {
            &self.logged_down
        };
        let last = logged.load(Ordering::Acquire);
        if last != u64::MAX && now.saturating_sub(last) < LOG_EVERY.as_nanos() as u64 {
            return;
        }
        logged.store(now, Ordering::Release);
        self.crossings.fetch_sub(crossings, Ordering::AcqRel);
        if over {
            tracing::warn!(
                resident,
                crossings,
                shed_above = self.shed_above,
                limit = self.limit,
                "resident memory passed the shedding threshold of limits.memory_limit: \
                 ingest is refused until it falls back (if this lasts, the series and \
                 history kept need more: raise limits.memory_limit, or lower \
                 limits.max_series or storage.retention)"
            );
        } else {
            tracing::info!(
                resident,
                crossings,
                shed_above = self.shed_above,
                "resident memory is back under the shedding threshold: ingest resumes"
            );
        }
    }

    /// The last resident-set reading, in bytes.
    pub fn resident(&self) -> u64 {
        self.resident.load(Ordering::Acquire)
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn the_resident_set_of_this_process_is_read() {
        let resident = resident_bytes().expect("Linux reports it");
        // A test binary with its runtime mapped is well over a megabyte and under a terabyte.
        assert!(resident > 1 << 20 && resident < 1 << 40, "{resident}");
        let page = page_size();
        assert!(page.is_power_of_two() && page >= 4096, "{page}");
        assert_eq!(resident % page, 0);
    }

    #[test]
    fn the_page_size_is_found_among_auxiliary_entries() {
        let mut auxv = Vec::new();
        for (k, v) in [(33u64, 0x7fff_0000u64), (6, 65536), (0, 0)] {
            auxv.extend_from_slice(&k.to_ne_bytes());
            auxv.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(page_size_from_auxv(&auxv), Some(65536));
        assert_eq!(page_size_from_auxv(&auxv[..16]), None);
    }

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn cgroup_v2_limits_are_the_tightest_over_the_group_and_its_ancestors() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        write(root, "kubepods/memory.max", "1073741824\n");
        write(root, "kubepods/pod1/memory.max", "max\n");
        write(root, "kubepods/pod1/app/memory.max", "2147483648\n");
        assert_eq!(
            cgroup_limit_under(root, "0::/kubepods/pod1/app\n"),
            Some(1 << 30)
        );
        assert_eq!(
            cgroup_limit_under(root, "0::/kubepods/pod1\n"),
            Some(1 << 30)
        );
        // A container with its own cgroup namespace sees its group as the root.
        write(root, "memory.max", "536870912\n");
        assert_eq!(cgroup_limit_under(root, "0::/\n"), Some(512 << 20));
        let bare = tempfile::tempdir().unwrap();
        write(bare.path(), "memory.max", "max\n");
        assert_eq!(cgroup_limit_under(bare.path(), "0::/\n"), None);
    }

    #[test]
    fn cgroup_v1_limits_are_read_from_the_memory_controller() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let own = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n";
        // Unlimited: the kernel writes the largest page-aligned i64.
        write(
            root,
            "memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(cgroup_limit_under(root, own), None);
        write(
            root,
            "memory/docker/abc/memory.limit_in_bytes",
            "268435456\n",
        );
        assert_eq!(cgroup_limit_under(root, own), Some(256 << 20));
        // The group's path is not visible from inside the container: the mount's root is the
        // container's group.
        let inside = tempfile::tempdir().unwrap();
        write(inside.path(), "memory/memory.limit_in_bytes", "134217728\n");
        assert_eq!(cgroup_limit_under(inside.path(), own), Some(128 << 20));
        assert_eq!(cgroup_limit_under(inside.path(), "garbage"), None);
        // A group outside this process' view is not followed out of the mount.
        write(root, "memory.limit_in_bytes", "1048576\n");
        assert_eq!(
            cgroup_limit_under(&root.join("memory"), "4:memory:/../..\n"),
            None
        );
    }

    #[test]
    fn the_limit_resolves_from_the_configuration_or_the_container() {
        let mut limits = LimitsConfig::default();
        assert_eq!(resolve_limit(&limits, None), None);
        assert_eq!(
            resolve_limit(&limits, Some(1000 << 20)),
            Some((900 << 20, LimitSource::Container(1000 << 20)))
        );
        limits.memory_limit = MemoryLimit::None;
        assert_eq!(resolve_limit(&limits, Some(1000 << 20)), None);
        limits.memory_limit = MemoryLimit::Fixed(ByteSize::mib(300));
        assert_eq!(
            resolve_limit(&limits, Some(1000 << 20)),
            Some((300 << 20, LimitSource::Configured))
        );
    }

    static FAKE_RESIDENT: AtomicU64 = AtomicU64::new(0);
    static READS: AtomicU64 = AtomicU64::new(0);

    fn fake_resident() -> Option<u64> {
        READS.fetch_add(1, Ordering::Relaxed);
        Some(FAKE_RESIDENT.load(Ordering::Relaxed))
    }

    #[test]
    fn the_guard_sheds_above_the_threshold_and_follows_new_readings() {
        let guard = MemoryGuard::with_reader(1000, 800, fake_resident);
        FAKE_RESIDENT.store(700, Ordering::Relaxed);
        assert!(!guard.over());
        assert_eq!(guard.resident(), 700);
        let reads = READS.load(Ordering::Relaxed);
        FAKE_RESIDENT.store(900, Ordering::Relaxed);
        let started = Instant::now();
        let mut seen_over = false;
        while started.elapsed() < Duration::from_secs(10) {
            if guard.over() {
                seen_over = true;
                break;
            }
            std::thread::yield_now();
        }
        assert!(seen_over, "the new reading was never taken");
        assert!(READS.load(Ordering::Relaxed) > reads);
        assert_eq!(guard.resident(), 900);
        assert!(guard.shedding.load(Ordering::Relaxed));
        // Back under: ingest resumes once the reading is refreshed.
        FAKE_RESIDENT.store(800, Ordering::Relaxed);
        let started = Instant::now();
        while guard.over() {
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::yield_now();
        }
        assert!(!guard.shedding.load(Ordering::Relaxed));
        assert_eq!((guard.limit(), guard.shed_above()), (1000, 800));
        // Both crossings were logged; a third within LOG_EVERY is only counted.
        assert_eq!(guard.crossings.load(Ordering::Relaxed), 0);
        FAKE_RESIDENT.store(1000, Ordering::Relaxed);
        let started = Instant::now();
        while !guard.over() {
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::yield_now();
        }
        assert_eq!(guard.crossings.load(Ordering::Relaxed), 1);
    }
}
