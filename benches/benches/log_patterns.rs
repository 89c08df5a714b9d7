//! Log template mining: lines per second on one core, and memory per template.
//!
//! The corpus is generated deterministically: 60 message shapes from nine services (nginx,
//! kubelet, Postgres, a Java service, app logs …) with varied fields (ids, IPs, UUIDs, durations,
//! quoted values, hosts, users, timestamps), drawn with skewed weights the way real traffic is.
//!
//! Run with `cargo bench -p presage-benches --bench log_patterns`. Besides criterion's figures it
//! prints a plain lines/s figure, the templates mined, and memory per template from
//! `PatternMiner::memory_bytes` and from the process's resident set. With `LOG_PATTERNS_DUMP=1`
//! it also lists the templates mined from the corpus.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use presage_forecaster::model::logpattern::{MinerConfig, PatternMiner, Severity};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// (service, severity, shape). `{…}` fields are filled by [`fill`].
const SHAPES: &[(&str, Severity, &str)] = &[
    // nginx
    (
        "nginx",
        Severity::Info,
        r#"{ip} - - [{clf}] "{method} /api/v1/{res}/{n} HTTP/1.1" {status} {big} "-" "{ua}""#,
    ),
    (
        "nginx",
        Severity::Info,
        r#"{ip} - {user} [{clf}] "GET /static/{res}.{ext} HTTP/2.0" 200 {big} "https://shop.example.com/" "{ua}""#,
    ),
    (
        "nginx",
        Severity::Error,
        r#"{ts} [error] {n}#{n}: *{big} upstream timed out (110: Connection timed out) while reading response header from upstream, client: {ip}, server: shop.example.com"#,
    ),
    (
        "nginx",
        Severity::Warn,
        r#"{ts} [warn] {n}#{n}: *{big} an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/{n}/{n}/{big} while reading upstream"#,
    ),
    (
        "nginx",
        Severity::Error,
        r#"{ts} [error] {n}#{n}: *{big} connect() failed (111: Connection refused) while connecting to upstream, client: {ip}, upstream: "http://{ip}:{port}/""#,
    ),
    // kubelet
    (
        "kubelet",
        Severity::Info,
        r#"I0312 {tod} {pid} kubelet.go:{n}] "SyncLoop {verb}" source="api" pods=["{ns}/{pod}"]"#,
    ),
    (
        "kubelet",
        Severity::Error,
        r#"E0312 {tod} {pid} pod_workers.go:{n}] "Error syncing pod, skipping" err="failed to \"StartContainer\" for \"{res}\" with CrashLoopBackOff: \"back-off {s} restarting failed container\"" pod="{ns}/{pod}" podUID="{uuid}""#,
    ),
    (
        "kubelet",
        Severity::Info,
        r#"I0312 {tod} {pid} prober.go:{n}] "Probe failed" probeType="Readiness" pod="{ns}/{pod}" podUID="{uuid}" containerName="{res}" probeResult="failure" output="HTTP probe failed with statuscode: {status}""#,
    ),
    (
        "kubelet",
        Severity::Info,
        r#"I0312 {tod} {pid} kuberuntime_manager.go:{n}] "Container {res} failed liveness probe, will be restarted" pod="{ns}/{pod}""#,
    ),
    (
        "kubelet",
        Severity::Warn,
        r#"W0312 {tod} {pid} eviction_manager.go:{n}] "Eviction manager: attempting to reclaim" resourceName="{resource}""#,
    ),
    (
        "kubelet",
        Severity::Info,
        r#"I0312 {tod} {pid} reconciler_common.go:{n}] "operationExecutor.MountVolume started for volume \"{res}\"" pod="{ns}/{pod}""#,
    ),
    (
        "kubelet",
        Severity::Error,
        r#"E0312 {tod} {pid} remote_image.go:{n}] "PullImage from image service failed" err="rpc error: code = NotFound" image="registry.example.com/{res}:{ver}""#,
    ),
    // postgres
    (
        "postgres",
        Severity::Error,
        r#"ERROR:  relation "{table}" does not exist at character {n}"#,
    ),
    (
        "postgres",
        Severity::Error,
        r#"ERROR:  duplicate key value violates unique constraint "{table}_pkey""#,
    ),
    (
        "postgres",
        Severity::Info,
        "DETAIL:  Key (id)=({big}) already exists.",
    ),
    (
        "postgres",
        Severity::Fatal,
        r#"FATAL:  password authentication failed for user "{user}""#,
    ),
    ("postgres", Severity::Error, "ERROR:  deadlock detected"),
    (
        "postgres",
        Severity::Info,
        "LOG:  checkpoint complete: wrote {n} buffers ({f}%); 0 WAL file(s) added, 0 removed, {n} recycled; write={f} s, sync={f} s, total={f} s",
    ),
    (
        "postgres",
        Severity::Info,
        "LOG:  duration: {f} ms  statement: SELECT * FROM {table} WHERE id = {big}",
    ),
    (
        "postgres",
        Severity::Warn,
        "WARNING:  there is no transaction in progress",
    ),
    (
        "postgres",
        Severity::Error,
        "ERROR:  canceling statement due to statement timeout",
    ),
    (
        "postgres",
        Severity::Info,
        "LOG:  connection received: host={ip} port={port}",
    ),
    (
        "postgres",
        Severity::Info,
        "LOG:  connection authorized: user={user} database={table} application_name={res}",
    ),
    // java service
    (
        "billing",
        Severity::Error,
        r#"Exception in thread "{thread}" java.lang.IllegalStateException: Connection pool exhausted after {ms}"#,
    ),
    (
        "billing",
        Severity::Error,
        r#"java.lang.NullPointerException: Cannot invoke "String.length()" because "{res}" is null"#,
    ),
    (
        "billing",
        Severity::Info,
        "o.s.web.servlet.DispatcherServlet : Completed initialization in {ms}",
    ),
    (
        "billing",
        Severity::Info,
        "c.e.billing.InvoiceService : invoice {uuid} created for customer {big} amount {f} EUR",
    ),
    (
        "billing",
        Severity::Warn,
        "c.e.billing.RetryTemplate : attempt {n} of 5 failed for invoice {uuid}, retrying in {s}",
    ),
    (
        "billing",
        Severity::Info,
        "o.h.engine.jdbc.batch.internal.BatchingBatch : HHH000315: Exhausted batch of {n} statements in {ms}",
    ),
    (
        "billing",
        Severity::Error,
        "c.z.hikari.pool.HikariPool : HikariPool-1 - Connection is not available, request timed out after {ms}.",
    ),
    // auth / app logs
    (
        "auth",
        Severity::Info,
        "user {big} logged in from {ip} in {ms}",
    ),
    ("auth", Severity::Info, "user {big} logged out after {s}"),
    (
        "auth",
        Severity::Warn,
        "failed login for {email} from {ip}: invalid password (attempt {n})",
    ),
    (
        "auth",
        Severity::Info,
        "issued token {hex} to client {res} expires in {s}",
    ),
    (
        "auth",
        Severity::Warn,
        "rate limit exceeded for {ip}, {n} requests in {s}",
    ),
    (
        "auth",
        Severity::Info,
        "session {uuid} refreshed for user {big}",
    ),
    (
        "auth",
        Severity::Error,
        "LDAP bind to ldap://{host}:{port} failed: connection reset by peer",
    ),
    (
        "auth",
        Severity::Info,
        "password reset mail sent to {email}",
    ),
    // payments
    (
        "payments",
        Severity::Info,
        "payment {uuid} authorised for order {big} amount={f} currency=EUR in {ms}",
    ),
    (
        "payments",
        Severity::Warn,
        "payment {uuid} declined by issuer: code={n} reason='{reason}'",
    ),
    (
        "payments",
        Severity::Error,
        "webhook delivery to https://{host}/hooks/{hex} failed with status {status} after {n} attempts",
    ),
    (
        "payments",
        Severity::Info,
        "settlement batch {big} closed with {n} transactions totalling {f}",
    ),
    (
        "payments",
        Severity::Error,
        "idempotency key {hex} reused with a different payload",
    ),
    // cache / queue
    (
        "worker",
        Severity::Info,
        "job {uuid} of type {res} finished in {ms}",
    ),
    (
        "worker",
        Severity::Warn,
        "job {uuid} of type {res} failed: {reason}, retrying in {s}",
    ),
    (
        "worker",
        Severity::Info,
        "consumer group {res} rebalanced: {n} partitions assigned to member {hex}",
    ),
    (
        "worker",
        Severity::Info,
        "committed offset {big} for partition {n} of topic {res}",
    ),
    (
        "worker",
        Severity::Warn,
        "redis {ip}:{port} latency spike: {ms} for GET session:{big}",
    ),
    (
        "worker",
        Severity::Info,
        "cache hit ratio {f} over the last {n} requests",
    ),
    (
        "worker",
        Severity::Error,
        "lost connection to broker {host}:{port}, reconnecting in {s}",
    ),
    (
        "worker",
        Severity::Debug,
        "heartbeat sent to coordinator {ip}:{port} (generation {n})",
    ),
    // system
    (
        "node",
        Severity::Warn,
        "disk usage on /var at {n}% ({sz} free)",
    ),
    (
        "node",
        Severity::Info,
        "systemd[1]: Started {res}.service - {reason}.",
    ),
    (
        "node",
        Severity::Error,
        "kernel: Out of memory: Killed process {pid} ({res}) total-vm:{sz}, anon-rss:{sz}, file-rss:0kB",
    ),
    (
        "node",
        Severity::Info,
        "sshd[{pid}]: Accepted publickey for {user} from {ip} port {port} ssh2: ED25519 SHA256:{hex}",
    ),
    (
        "node",
        Severity::Warn,
        "sshd[{pid}]: Invalid user {user} from {ip} port {port}",
    ),
    (
        "node",
        Severity::Info,
        "CRON[{pid}]: ({user}) CMD (/usr/local/bin/{res} --since {ts})",
    ),
    (
        "node",
        Severity::Info,
        "dhclient[{pid}]: DHCPACK of {ip} from {ip} (xid=0x{hex})",
    ),
    (
        "node",
        Severity::Warn,
        "ntpd[{pid}]: adjusting local clock by {f}s",
    ),
    (
        "node",
        Severity::Info,
        "containerd: shim disconnected id={hex} namespace=k8s.io",
    ),
];

const WORDS: &[&str] = &[
    "orders",
    "users",
    "carts",
    "invoices",
    "catalog",
    "search",
    "checkout",
    "inventory",
    "shipping",
    "profile",
    "reviews",
    "media",
];

fn fill(rng: &mut Rng, shape: &str, out: &mut String) {
    out.clear();
    let mut rest = shape;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        let key = &rest[open + 1..close];
        let known = !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase());
        out.push_str(&rest[..open]);
        if !known {
            out.push_str(&rest[open..=close]);
            rest = &rest[close + 1..];
            continue;
        }
        use std::fmt::Write as _;
        let _ = match key {
            "ip" => write!(
                out,
                "{}.{}.{}.{}",
                [10, 172, 192][rng.below(3) as usize],
                rng.below(256),
                rng.below(256),
                1 + rng.below(254)
            ),
            "port" => write!(out, "{}", 1024 + rng.below(60_000)),
            "n" => write!(out, "{}", rng.below(1_000)),
            "big" => write!(out, "{}", rng.below(10_000_000)),
            "pid" => write!(out, "{}", 100 + rng.below(60_000)),
            "status" => write!(
                out,
                "{}",
                rng.pick(&["200", "201", "204", "301", "404", "500", "503"])
            ),
            "f" => write!(out, "{}.{:03}", rng.below(1_000), rng.below(1_000)),
            "ms" => write!(out, "{}ms", rng.below(5_000)),
            "s" => write!(out, "{}.{}s", rng.below(60), rng.below(10)),
            "sz" => write!(out, "{}kB", rng.below(10_000_000)),
            "uuid" => write!(
                out,
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                rng.next() as u32,
                rng.next() as u16,
                rng.next() as u16,
                rng.next() as u16,
                rng.next() & 0xffff_ffff_ffff
            ),
            "hex" => write!(out, "{:016x}", rng.next()),
            "ts" => write!(
                out,
                "2024-03-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60),
                rng.below(1000)
            ),
            "tod" => write!(
                out,
                "{:02}:{:02}:{:02}.{:06}",
                rng.below(24),
                rng.below(60),
                rng.below(60),
                rng.below(1_000_000)
            ),
            "clf" => write!(
                out,
                "{:02}/Mar/2024:{:02}:{:02}:{:02} +0000",
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60)
            ),
            "method" => write!(
                out,
                "{}",
                rng.pick(&["GET", "GET", "GET", "POST", "PUT", "DELETE"])
            ),
            "res" | "table" => write!(out, "{}", rng.pick(WORDS)),
            "ext" => write!(out, "{}", rng.pick(&["js", "css", "png", "svg", "woff2"])),
            "ua" => write!(
                out,
                "{}",
                rng.pick(&[
                    "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
                    "curl/8.5.0",
                    "kube-probe/1.29",
                    "Go-http-client/1.1",
                ])
            ),
            "user" => write!(
                out,
                "{}",
                rng.pick(&["alice", "bob", "svc_report", "postgres", "deploy", "carol"])
            ),
            "email" => write!(
                out,
                "{}{}@example.com",
                rng.pick(&["alice", "bob", "carol", "ops"]),
                rng.below(1000)
            ),
            "host" => write!(
                out,
                "{}-{}.internal.example.com",
                rng.pick(WORDS),
                rng.below(20)
            ),
            "ns" => write!(
                out,
                "{}",
                rng.pick(&["default", "kube-system", "shop", "monitoring"])
            ),
            "pod" => write!(
                out,
                "{}-{:010x}-{}",
                rng.pick(WORDS),
                rng.next() & 0xff_ffff_ffff,
                rng.pick(&["x2x9q", "abcde", "pq7rs", "zz1yk"])
            ),
            "verb" => write!(
                out,
                "{}",
                rng.pick(&["ADD", "UPDATE", "DELETE", "RECONCILE"])
            ),
            "resource" => write!(
                out,
                "{}",
                rng.pick(&["memory", "ephemeral-storage", "nodefs.inodesFree"])
            ),
            "thread" => write!(
                out,
                "{}",
                rng.pick(&["main", "pool-1-thread-3", "http-nio-8080-exec-7"])
            ),
            "ver" => write!(out, "v{}.{}.{}", rng.below(5), rng.below(30), rng.below(10)),
            "reason" => write!(
                out,
                "{}",
                rng.pick(&[
                    "insufficient funds",
                    "card expired",
                    "do not honour",
                    "timeout"
                ])
            ),
            _ => write!(out, "{{{key}}}"),
        };
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
}

/// `n` lines from the shapes, with Zipf-like weights (shape k weighs 1 / (1 + k % 12)).
fn corpus(n: usize) -> Vec<(&'static str, Severity, String)> {
    let weights: Vec<u64> = (0..SHAPES.len() as u64)
        .map(|k| 1_000 / (1 + k % 12))
        .collect();
    let total: u64 = weights.iter().sum();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut buf = String::new();
    (0..n)
        .map(|_| {
            let mut r = rng.below(total);
            let mut k = 0;
            while r >= weights[k] {
                r -= weights[k];
                k += 1;
            }
            let (service, severity, shape) = SHAPES[k];
            fill(&mut rng, shape, &mut buf);
            (service, severity, buf.clone())
        })
        .collect()
}

fn mine(miner: &mut PatternMiner, lines: &[(&'static str, Severity, String)]) -> usize {
    let mut new = 0;
    for (i, (service, severity, line)) in lines.iter().enumerate() {
        let o = miner.observe(service, *severity, line, i as i64);
        new += usize::from(o.is_new);
    }
    new
}

/// Resident set and its peak, in KiB, from /proc (Linux only).
fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// A word made of letters only, distinct per `i`.
fn word(mut i: u64) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "we", "xa", "yo", "zu", "be", "co",
        "du",
    ];
    let mut s = String::new();
    for _ in 0..4 {
        s.push_str(SYL[(i % 16) as usize]);
        i /= 16;
    }
    s
}

/// Prints the figures that criterion does not give: plain lines/s, templates and memory.
fn report(lines: &[(&'static str, Severity, String)]) {
    let mut miner = PatternMiner::new(MinerConfig::default());
    mine(&mut miner, lines);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        mine(&mut miner, lines);
        best = best.min(start.elapsed().as_secs_f64());
    }
    let bytes: usize = lines.iter().map(|(_, _, l)| l.len()).sum();
    eprintln!(
        "log_patterns: {} lines ({} bytes avg), {} shapes -> {} templates; warm: {:.0} lines/s on one core (best of 5)",
        lines.len(),
        bytes / lines.len(),
        SHAPES.len(),
        miner.len(),
        lines.len() as f64 / best,
    );
    eprintln!(
        "log_patterns: mixed corpus memory_bytes {} = {} bytes per template, {} tree nodes",
        miner.memory_bytes(),
        miner.memory_bytes() / miner.len().max(1),
        miner.node_count()
    );
    if std::env::var_os("LOG_PATTERNS_DUMP").is_some() {
        let mut all: Vec<_> = miner.templates().collect();
        all.sort_by(|a, b| (&a.service, &a.template).cmp(&(&b.service, &b.template)));
        for t in all {
            eprintln!("  {:<9} {:>7} {}", t.service, t.count, t.template);
        }
    }
    drop(miner);

    // Ten thousand distinct templates of about 80 bytes, spread over the tree the way separate
    // messages are (100 × 100 distinct leading pairs), each line with six unique words in ten.
    let n = 10_000u64;
    let distinct: Vec<String> = (0..n)
        .map(|i| {
            let w: Vec<String> = (0..4).map(|k| word(20_000 + i * 4 + k)).collect();
            format!(
                "{} {} {} {} {} {} from 10.0.{}.{} in {}ms",
                word(i / 100),
                word(1_000 + i % 100),
                w[0],
                w[1],
                w[2],
                w[3],
                i % 256,
                i % 200,
                i
            )
        })
        .collect();
    let before = rss_kib();
    let mut miner = PatternMiner::new(MinerConfig::default());
    let start = Instant::now();
    for (i, line) in distinct.iter().enumerate() {
        miner.observe("svc", Severity::Info, line, i as i64);
    }
    let fill_secs = start.elapsed().as_secs_f64();
    let after = rss_kib();
    eprintln!(
        "log_patterns: {} distinct templates (avg line {} bytes) mined in {:.2}s; memory_bytes {} = {} bytes per template",
        miner.len(),
        distinct.iter().map(String::len).sum::<usize>() / distinct.len(),
        fill_secs,
        miner.memory_bytes(),
        miner.memory_bytes() / miner.len().max(1),
    );
    if let (Some((rss0, _)), Some((rss1, hwm))) = (before, after) {
        eprintln!(
            "log_patterns: resident set grew {} KiB = {} bytes per template (peak RSS {} KiB)",
            rss1.saturating_sub(rss0),
            rss1.saturating_sub(rss0) * 1024 / miner.len().max(1) as u64,
            hwm
        );
    }
    black_box(&miner);
}

fn bench(c: &mut Criterion) {
    let lines = corpus(50_000);
    report(&lines);

    let mut group = c.benchmark_group("log_patterns");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.sample_size(20);

    let mut warm = PatternMiner::new(MinerConfig::default());
    mine(&mut warm, &lines);
    group.bench_function("observe_warm", |b| {
        b.iter(|| black_box(mine(&mut warm, &lines)))
    });
    group.bench_function("observe_cold", |b| {
        b.iter_batched(
            || PatternMiner::new(MinerConfig::default()),
            |mut miner| black_box(mine(&mut miner, &lines)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
