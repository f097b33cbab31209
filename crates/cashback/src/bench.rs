//! `cashback bench`: a closed-loop HTTP load generator (enrollment and ranking benchmarks).
//!
//! Workload (documented in docs/benchmarks.md): `--connections` keep-alive HTTP/1.1 connections
//! each send requests back to back for `--duration` seconds after `--warmup` seconds:
//! * `put`: PUT /bpd/io/payment-instruments/{hpan} with a new random hpan every request;
//! * `get`: GET /bpd/io/payment-instruments/{hpan} of `--instruments` hpans enrolled beforehand.
//!   (For both, `--citizens` adults are first enrolled with PUT /bpd/io/citizen.)
//! * `ranking`: GET /bpd/io/citizen/v2/ranking?awardPeriodId=`--award-period-id` for random
//!   citizens of a database seeded by `cashback bench-ingest seed --citizens N` (same fiscal
//!   codes: [`crate::bench_ingest::citizen_code`]) and scored by `cashback ingest`. Tokens are
//!   minted for `--token-pool` citizens drawn at random among the `--citizens` seeded ones; each
//!   request picks one of them at random. Before the run, a sample of answers is fetched and
//!   checked (one entry for the period, 1 ≤ rank ≤ participants + 1); a 503 there (board still
//!   loading) is retried for up to `--ready-timeout` seconds.
//! * `award-periods`: GET /bpd/io/award-periods/v2 with the same tokens (same authentication,
//!   no store read: the baseline of the HTTP stack);
//! * `health`: GET /health without a token (one trivial store read).
//!
//! Latency is recorded per request in an HdrHistogram (µs); every status is counted. With
//! `--server-pid`, the CPU time of the server and of this process over the measured window is
//! reported (from /proc), with the whole machine's and the load average. Only loopback targets
//! are allowed; the run is bounded in time and stops by itself.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use cashback_api::auth::mint_dev_token;
use cashback_api::state::Secret;
use cashback_domain::FiscalCode;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

// Which citizen asks next: the bench-data generator's splitmix64.
use crate::bench_ingest::Rng;

use crate::bench_ingest::{BENCH_PERIOD_ID, citizen_code};
use crate::rawhttp::{self, RawConn};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Scenario {
    Put,
    Get,
    Ranking,
    AwardPeriods,
    Health,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Put => "put",
            Scenario::Get => "get",
            Scenario::Ranking => "ranking",
            Scenario::AwardPeriods => "award-periods",
            Scenario::Health => "health",
        }
    }

    /// Scenarios on an already seeded database (no enrollment setup).
    fn on_seeded(self) -> bool {
        matches!(self, Scenario::Ranking | Scenario::AwardPeriods | Scenario::Health)
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Server address (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub target: SocketAddr,
    #[arg(long, value_enum, default_value = "put")]
    pub scenario: Scenario,
    /// Measured seconds.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// `put`/`get`: citizens to enroll and spread requests over; `ranking`/`award-periods`:
    /// citizens seeded by `bench-ingest seed --citizens` (numbers 0..N).
    #[arg(long, default_value_t = 1000)]
    pub citizens: u32,
    /// `get`: instruments enrolled beforehand.
    #[arg(long, default_value_t = 20_000)]
    pub instruments: u32,
    /// `ranking`/`award-periods`: distinct seeded citizens (random) to mint tokens for.
    #[arg(long, default_value_t = 100_000)]
    pub token_pool: u32,
    /// `ranking`: the award period asked.
    #[arg(long, default_value_t = BENCH_PERIOD_ID)]
    pub award_period_id: i64,
    /// `ranking`: how long the pre-run check retries a 503 (board still loading), seconds.
    #[arg(long, default_value_t = 300)]
    pub ready_timeout: u64,
    /// Report this server process's CPU time over the measured window (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The generator's HTTP client.
    #[arg(long, value_enum, default_value = "raw", env = "CASHBACK_BENCH_CLIENT")]
    pub client: Client,
    /// HS256 secret of the server's tokens (the `--dev` one by default).
    #[arg(long, default_value = crate::serve::DEV_JWT_SECRET, env = "CASHBACK_BENCH_JWT_SECRET")]
    pub jwt_secret: String,
}

/// An adult's valid fiscal code derived from `n` (the same code as
/// [`crate::bench_ingest::citizen_code`]).
pub fn fiscal_code(n: u32) -> FiscalCode {
    const L: &[u8; 26] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut n2 = n;
    let mut name = String::new();
    for _ in 0..6 {
        name.push(L[(n2 % 26) as usize] as char);
        n2 /= 26;
    }
    let body = format!("{name}80A01H501");
    for c in L {
        if let Ok(cf) = FiscalCode::parse(&format!("{body}{}", *c as char)) {
            return cf;
        }
    }
    unreachable!("a check character always exists")
}

pub(crate) fn hpan(seed: u64, conn: usize, n: u64) -> String {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update((conn as u64).to_le_bytes());
    h.update(n.to_le_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

pub(crate) fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
}

/// One request without a body through hyper's client; returns the status (the body is read
/// and dropped).
pub(crate) async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    uri: Uri,
    auth: Option<&HeaderValue>,
) -> anyhow::Result<u16> {
    sender.ready().await?;
    let mut b = Request::builder().method(method).uri(uri).header(HOST, HeaderValue::from_static("127.0.0.1"));
    if let Some(a) = auth {
        b = b.header(AUTHORIZATION, a.clone());
    }
    let resp = sender.send_request(b.body(Full::new(Bytes::new()))?).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

pub(crate) async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    token: &str,
) -> anyhow::Result<u16> {
    exchange(sender, method, path.parse()?, Some(&bearer(token)?)).await
}

struct Outcome {
    hist: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

/// CPU counters at one instant (Linux /proc; zeros elsewhere).
#[derive(Clone, Copy, Default)]
pub(crate) struct CpuSnapshot {
    at: Option<Instant>,
    /// This process: user + system, clock ticks.
    own: u64,
    /// The server process, when given.
    server: Option<u64>,
    /// Whole machine (/proc/stat "cpu"): busy (user, nice, system, irq, softirq), steal, all.
    busy: u64,
    steal: u64,
    all: u64,
}

/// utime + stime of a process, in clock ticks.
pub(crate) fn proc_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command: state is field 3; utime, stime are fields 14, 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub(crate) fn snapshot(server_pid: Option<u32>) -> CpuSnapshot {
    let mut s = CpuSnapshot {
        at: Some(Instant::now()),
        own: proc_ticks("self").unwrap_or(0),
        server: server_pid.and_then(|p| proc_ticks(&p.to_string())),
        ..Default::default()
    };
    if let Some(line) = std::fs::read_to_string("/proc/stat").ok().and_then(|t| t.lines().next().map(str::to_owned)) {
        let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        if v.len() >= 8 {
            s.busy = v[0] + v[1] + v[2] + v[5] + v[6];
            s.steal = v[7];
            s.all = v[..8].iter().sum();
        }
    }
    s
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU use over the window, in cores (1.0 = one core busy the whole window). Assumes the usual
/// 100 ticks per second of Linux.
pub(crate) fn cpu_report(a: &CpuSnapshot, b: &CpuSnapshot) -> serde_json::Value {
    const TICKS: f64 = 100.0;
    let secs = match (a.at, b.at) {
        (Some(x), Some(y)) => y.duration_since(x).as_secs_f64().max(1e-9),
        _ => return serde_json::Value::Null,
    };
    let cores = |t: u64| ((t as f64 / TICKS / secs) * 100.0).round() / 100.0;
    let all = (b.all - a.all).max(1) as f64;
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let share = |t: u64| ((t as f64 / all * n) * 100.0).round() / 100.0;
    serde_json::json!({
        "window_s": (secs * 10.0).round() / 10.0,
        "machine_cores": n,
        "generator_cores": cores(b.own - a.own),
        "server_cores": match (a.server, b.server) { (Some(x), Some(y)) => serde_json::json!(cores(y - x)), _ => serde_json::Value::Null },
        "machine_busy_cores": share(b.busy - a.busy),
        "machine_steal_cores": share(b.steal - a.steal),
    })
}

/// The citizens asked in the ranking scenarios: `pool` distinct numbers among `0..citizens`.
fn pick_citizens(citizens: u32, pool: u32, seed: u64) -> Vec<u32> {
    let pool = pool.min(citizens) as usize;
    if pool == citizens as usize {
        return (0..citizens).collect();
    }
    let mut rng = Rng(seed);
    let mut seen = std::collections::HashSet::with_capacity(pool);
    let mut out = Vec::with_capacity(pool);
    while out.len() < pool {
        let n = rng.below(u64::from(citizens)) as u32;
        if seen.insert(n) {
            out.push(n);
        }
    }
    out
}

/// Fetches the ranking of up to 20 citizens of the pool and checks the answers; retries 503
/// (rankings loading) until `ready_timeout`.
async fn check_ranking(args: &BenchArgs, uri: &Uri, auths: &[HeaderValue]) -> anyhow::Result<serde_json::Value> {
    let mut s = RawConn::connect(args.target).await?;
    let mut request = Vec::new();
    let ready_by = Instant::now() + Duration::from_secs(args.ready_timeout);
    let started = Instant::now();
    let (mut ranked, mut unranked, mut participants) = (0u32, 0u32, 0u64);
    let mut sample = serde_json::Value::Null;
    let n = auths.len().min(20);
    let mut i = 0;
    while i < n {
        request.clear();
        rawhttp::write_request(&mut request, "GET", &uri.to_string(), Some(auths[i].as_bytes()), b"");
        let a = s.exchange(&request).await?;
        let (st, body) = (a.status, a.body);
        if st == 503 && Instant::now() < ready_by {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        if st != 200 {
            bail!("ranking check: status {st}: {}", String::from_utf8_lossy(body));
        }
        let v: serde_json::Value = serde_json::from_slice(body).context("ranking check: not JSON")?;
        let entries = v.as_array().context("ranking check: not an array")?;
        if entries.len() != 1 || entries[0]["awardPeriodId"].as_i64() != Some(args.award_period_id) {
            bail!("ranking check: expected one entry for period {}: {v}", args.award_period_id);
        }
        let e = &entries[0];
        let rank = e["ranking"].as_u64().context("ranking check: no ranking")?;
        let total = e["totalParticipants"].as_u64().context("ranking check: no totalParticipants")?;
        let count = e["transactionNumber"].as_u64().context("ranking check: no transactionNumber")?;
        if rank == 0 || rank > total + 1 || (rank <= total && count > e["maxTransactionNumber"].as_u64().unwrap_or(0)) {
            bail!("ranking check: implausible answer {e}");
        }
        if rank <= total {
            ranked += 1;
        } else {
            unranked += 1;
        }
        participants = total;
        // The first ranked answer (or the first answer if none is ranked).
        if sample.is_null() || (rank <= total && ranked == 1) {
            sample = v.clone();
        }
        i += 1;
    }
    if ranked == 0 {
        bail!("ranking check: none of the {n} sampled citizens is ranked (was the file ingested?)");
    }
    Ok(serde_json::json!({
        "sampled": n, "ranked": ranked, "unranked": unranked, "participants": participants,
        "ready_after_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0, "sample": sample,
    }))
}

/// What each connection sends.
enum Plan {
    /// A new card per request, for one of the citizens (`Authorization` values).
    Put { bearers: Arc<Vec<String>>, seed: u64 },
    /// A card's path with its owner's `Authorization` value.
    Get { pool: Arc<Vec<(String, String)>> },
    /// A fixed path with one of `auths` (none: no Authorization header).
    Fixed { path: String, auths: Arc<Vec<HeaderValue>> },
}

/// Which HTTP client the generator uses (`--client`).
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Client {
    /// [`crate::rawhttp`]: one write and one read per request on the connection's own task.
    Raw,
    /// hyper's HTTP/1.1 client (the generator of the figures before 2026-12-03).
    Hyper,
}

/// One keep-alive connection of either client.
enum Conn {
    Raw(RawConn),
    Hyper(SendRequest<Full<Bytes>>),
}

impl Conn {
    async fn open(client: Client, target: SocketAddr) -> anyhow::Result<Self> {
        Ok(match client {
            Client::Raw => Conn::Raw(RawConn::connect(target).await?),
            Client::Hyper => Conn::Hyper(connect(target).await?),
        })
    }

    /// One request without a body; returns the status. `request` is a reusable buffer.
    async fn send(
        &mut self,
        request: &mut Vec<u8>,
        method: Method,
        path: &str,
        auth: Option<&[u8]>,
    ) -> anyhow::Result<u16> {
        match self {
            Conn::Raw(c) => {
                request.clear();
                rawhttp::write_request(request, method.as_str(), path, auth, b"");
                Ok(c.exchange(request).await?.status)
            }
            Conn::Hyper(s) => {
                let auth = auth.map(HeaderValue::from_bytes).transpose()?;
                exchange(s, method, path.parse()?, auth.as_ref()).await
            }
        }
    }

    fn closed(&self) -> bool {
        matches!(self, Conn::Raw(c) if c.closed())
    }
}

/// Setup, closed loop over `conns` connections: `PUT /bpd/io/citizen` for every token, then
/// `instruments` cards (`hpan(seed, usize::MAX, k)`, owned by `tokens[k % len]`). Returns each
/// card's path with its owner's token.
pub(crate) async fn enroll(
    target: SocketAddr,
    tokens: Arc<Vec<String>>,
    instruments: u32,
    seed: u64,
    conns: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let conns = conns.max(1);
    let mut joins = Vec::new();
    for c in 0..conns {
        let tokens = tokens.clone();
        joins.push(tokio::spawn(async move {
            let mut s = connect(target).await?;
            let mut i = c;
            while i < tokens.len() {
                let st = send(&mut s, Method::PUT, "/bpd/io/citizen", &tokens[i]).await?;
                if st != 200 {
                    bail!("citizen enrollment answered {st}");
                }
                i += conns;
            }
            let mut enrolled = Vec::new();
            let mut k = c as u64;
            while k < u64::from(instruments) {
                let tok = &tokens[(k % tokens.len() as u64) as usize];
                let path = format!("/bpd/io/payment-instruments/{}", hpan(seed, usize::MAX, k));
                let st = send(&mut s, Method::PUT, &path, tok).await?;
                if st != 200 {
                    bail!("instrument enrollment answered {st}");
                }
                enrolled.push((path, tok.clone()));
                k += conns as u64;
            }
            Ok::<_, anyhow::Error>(enrolled)
        }));
    }
    let mut pool = Vec::new();
    for j in joins {
        pool.extend(j.await.context("setup task")??);
    }
    Ok(pool)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !args.target.ip().is_loopback() {
        bail!("--target must be a loopback address");
    }
    if args.duration > 3600 || args.connections == 0 || args.connections > 10_000 || args.citizens == 0 {
        bail!("limits: duration ≤ 3600 s, 1 ≤ connections ≤ 10000, citizens ≥ 1");
    }
    if args.scenario.on_seeded() && (args.token_pool == 0 || args.token_pool > 2_000_000) {
        bail!("limits: 1 ≤ token-pool ≤ 2000000");
    }
    let secret = Secret::new(args.jwt_secret.clone());
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let seed = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    let mut check = serde_json::Value::Null;

    let plan = if args.scenario.on_seeded() {
        let (uri, auths): (Uri, Vec<HeaderValue>) = match args.scenario {
            Scenario::Health => ("/health".parse()?, Vec::new()),
            s => {
                let started = Instant::now();
                let numbers = pick_citizens(args.citizens, args.token_pool, seed);
                let auths = numbers
                    .iter()
                    .map(|&n| bearer(&mint_dev_token(&secret, &citizen_code(n)?, now + 7200)))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                eprintln!(
                    "setup: {} tokens for citizens among 0..{} ({:.1} s)",
                    auths.len(),
                    args.citizens,
                    started.elapsed().as_secs_f64()
                );
                let uri = if s == Scenario::Ranking {
                    format!("/bpd/io/citizen/v2/ranking?awardPeriodId={}", args.award_period_id).parse()?
                } else {
                    "/bpd/io/award-periods/v2".parse()?
                };
                (uri, auths)
            }
        };
        if args.scenario == Scenario::Ranking {
            check = check_ranking(&args, &uri, &auths).await?;
            eprintln!("check: {check}");
        }
        Plan::Fixed { path: uri.to_string(), auths: Arc::new(auths) }
    } else {
        let tokens: Vec<String> =
            (0..args.citizens).map(|n| mint_dev_token(&secret, &fiscal_code(n), now + 7200)).collect();
        eprintln!("setup: enrolling {} citizens", args.citizens);
        let instruments = if args.scenario == Scenario::Get { args.instruments } else { 0 };
        let pool = enroll(args.target, Arc::new(tokens.clone()), instruments, seed, args.connections.min(32)).await?;
        match args.scenario {
            Scenario::Get => {
                Plan::Get { pool: Arc::new(pool.into_iter().map(|(p, t)| (p, format!("Bearer {t}"))).collect()) }
            }
            _ => Plan::Put { bearers: Arc::new(tokens.iter().map(|t| format!("Bearer {t}")).collect()), seed },
        }
    };
    let plan = Arc::new(plan);

    eprintln!(
        "running {} with {} connections: {} s warm-up, {} s measured",
        args.scenario.name(),
        args.connections,
        args.warmup,
        args.duration
    );
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let deadline = measure_from + Duration::from_secs(args.duration);
    // CPU and load at both ends of the measured window.
    let server_pid = args.server_pid;
    let probe = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let (a, la) = (snapshot(server_pid), loadavg());
        tokio::time::sleep_until(deadline.into()).await;
        (a, la, snapshot(server_pid), loadavg())
    });
    let mut joins = Vec::new();
    for c in 0..args.connections {
        let (plan, target, client) = (plan.clone(), args.target, args.client);
        joins.push(tokio::spawn(async move {
            let mut out = Outcome {
                hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
                statuses: BTreeMap::new(),
                errors: 0,
            };
            let mut rng = Rng(seed ^ (c as u64).wrapping_mul(0xA24B_AED4_963E_E407));
            let mut conn: Option<Conn> = None;
            let mut request = Vec::with_capacity(1024);
            let mut n: u64 = 0;
            while Instant::now() < deadline {
                if conn.is_none() {
                    match Conn::open(client, target).await {
                        Ok(s) => conn = Some(s),
                        Err(_) => {
                            out.errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let s = conn.as_mut().expect("connected");
                let (method, path, auth): (Method, Cow<'_, str>, Option<&[u8]>) = match &*plan {
                    Plan::Put { bearers, seed } => (
                        Method::PUT,
                        Cow::Owned(format!("/bpd/io/payment-instruments/{}", hpan(*seed, c, n))),
                        Some(bearers[(c + n as usize * 7) % bearers.len()].as_bytes()),
                    ),
                    Plan::Get { pool } => {
                        let (p, b) = &pool[(c * 7919 + n as usize * 104_729) % pool.len()];
                        (Method::GET, Cow::Borrowed(p.as_str()), Some(b.as_bytes()))
                    }
                    Plan::Fixed { path, auths } => {
                        let auth =
                            (!auths.is_empty()).then(|| auths[rng.below(auths.len() as u64) as usize].as_bytes());
                        (Method::GET, Cow::Borrowed(path.as_str()), auth)
                    }
                };
                let t0 = Instant::now();
                let res = s.send(&mut request, method, &path, auth).await;
                n += 1;
                let measured = t0 >= measure_from && Instant::now() <= deadline;
                match res {
                    Ok(st) => {
                        if measured {
                            let us = t0.elapsed().as_micros().max(1) as u64;
                            let _ = out.hist.record(us.min(60_000_000));
                            *out.statuses.entry(st).or_default() += 1;
                        }
                        if s.closed() {
                            conn = None;
                        }
                    }
                    Err(_) => {
                        if measured {
                            out.errors += 1;
                        }
                        conn = None;
                    }
                }
            }
            out
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut errors = 0;
    for j in joins {
        let o = j.await?;
        hist.add(&o.hist)?;
        for (k, v) in o.statuses {
            *statuses.entry(k).or_default() += v;
        }
        errors += o.errors;
    }
    let (cpu_a, load_a, cpu_b, load_b) = probe.await?;
    let total = hist.len();
    let rps = total as f64 / args.duration as f64;
    let non_2xx: u64 = statuses.iter().filter(|(k, _)| !(200..300).contains(*k)).map(|(_, v)| v).sum();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let mut report = serde_json::json!({
        "scenario": args.scenario.name(),
        "connections": args.connections,
        "duration_s": args.duration,
        "requests": total,
        "throughput_rps": (rps * 10.0).round() / 10.0,
        "latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": hist.max() as f64 / 1000.0 },
        "statuses": statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "non_2xx": non_2xx,
        "transport_errors": errors,
        "cpu": cpu_report(&cpu_a, &cpu_b),
        "loadavg": { "start": load_a, "end": load_b },
    });
    if !check.is_null() {
        report["check"] = check;
    }
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiscal_codes_match_the_seeded_ones() {
        for n in [0, 1, 25, 26, 675, 999_999, 1_999_999, 308_915_775] {
            assert_eq!(fiscal_code(n), citizen_code(n).unwrap(), "citizen {n}");
        }
    }

    #[test]
    fn picked_citizens_are_distinct_and_in_range() {
        let v = pick_citizens(1_000, 300, 7);
        let set: std::collections::HashSet<_> = v.iter().collect();
        assert_eq!((v.len(), set.len()), (300, 300));
        assert!(v.iter().all(|&n| n < 1_000));
        assert_eq!(pick_citizens(10, 50, 7), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn proc_ticks_reads_this_process() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(proc_ticks("self").is_some());
        }
    }
}
