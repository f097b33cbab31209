//! `cashback loadtest`: the launch-day load profile, **open loop** (issue 5).
//!
//! Unlike `cashback bench` (closed loop: each connection waits for its answer before sending the
//! next request, so an overloaded server slows the generator down and hides its own overload),
//! requests here are *scheduled by the clock* at the offered arrival rate and their latency is
//! measured from the scheduled instant: a request that waits for a free connection, or for the
//! server, has that wait in its latency. At most `--max-in-flight` requests are outstanding; a
//! request due when that many are in flight is not sent and is counted as a **client-side
//! drop** (reported per phase), never silently skipped.
//!
//! The mix (one "unit", repeated; requests of a unit are spread over time like any other):
//! * onboarding: `PUT /bpd/io/citizen/v2` of a **new** citizen, `GET /bpd/io/award-periods/v2`,
//!   `PATCH /bpd/io/citizen/v2` (IBAN) and `--cards-per-unit` `PUT /bpd/io/payment-instruments/{hpan}`
//!   of new cards, for citizens enrolled during setup;
//! * wallet renders: `--gets-per-put` × (1 + cards) `GET /bpd/io/payment-instruments/{hpan}`
//!   of cards enrolled during setup, each by its owner.
//!
//! With the defaults a unit is 14 requests: 1 citizen PUT, 1 award-periods GET, 1 IBAN PATCH,
//! 2 card PUTs, 9 card GETs (three GETs per PUT; 4 writes in 14).
//!
//! Phases: `ramp` (rate/10 → rate, linear), `steady` (rate), optionally `overload`
//! (rate × `--overload-factor`) and `recovery` (rate). Per phase: offered and achieved rates,
//! goodput (2xx/s), the status mix (and how many 429/503 lacked `Retry-After`), HdrHistogram
//! latency percentiles of admitted (2xx) requests and of all answers, CPU and the server's RSS
//! (with `--server-pid`); plus a per-second timeline. Loopback only; bounded in time (at most
//! 900 s of schedule plus one client timeout for the last answers).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use cashback_api::auth::mint_dev_token;
use cashback_api::state::Secret;
use clap::Args;
use hdrhistogram::Histogram;
use hyper::Method;
use hyper::header::HeaderValue;
use tokio::sync::{Semaphore, mpsc};

use crate::bench::{self, bearer, fiscal_code, hpan};
use crate::bench_ingest::Rng;
use crate::rawhttp::{self, RawConn};

const IBAN: &str = "IT60X0542811101000000123456";
/// Seed of the cards enrolled during setup (fixed, so a second run on the same database finds
/// them again).
const SETUP_SEED: u64 = 0x5EED_0005;
/// Longest schedule accepted, seconds.
const MAX_SCHEDULE_S: u64 = 900;

#[derive(Args, Debug)]
pub struct LoadtestArgs {
    /// Server address (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub target: SocketAddr,
    /// Target arrival rate of the steady phase, requests/s.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u32,
    /// Seconds of linear ramp from rate/10 to rate.
    #[arg(long, default_value_t = 10)]
    pub ramp: u64,
    /// Seconds at the target rate.
    #[arg(long, default_value_t = 30)]
    pub steady: u64,
    /// Seconds of overload (rate × `--overload-factor`) after the steady phase; 0 = none.
    #[arg(long, default_value_t = 0)]
    pub overload: u64,
    #[arg(long, default_value_t = 3.0)]
    pub overload_factor: f64,
    /// Seconds back at the target rate after the overload.
    #[arg(long, default_value_t = 10)]
    pub recovery: u64,
    /// Requests outstanding at most (each on its own keep-alive connection); beyond, a due
    /// request is a client-side drop.
    #[arg(long, default_value_t = 2_048)]
    pub max_in_flight: usize,
    /// Client-side timeout of one request, seconds.
    #[arg(long, default_value_t = 15)]
    pub request_timeout: u64,
    /// Citizens enrolled during setup (IBAN PATCH, card PUTs and GETs are theirs).
    #[arg(long, default_value_t = 20_000)]
    pub citizens: u32,
    /// Cards enrolled during setup (owners: citizens in turn).
    #[arg(long, default_value_t = 40_000)]
    pub instruments: u32,
    /// Card PUTs per onboarding unit.
    #[arg(long, default_value_t = 2)]
    pub cards_per_unit: u32,
    /// Wallet-render GETs per PUT (citizen and card PUTs).
    #[arg(long, default_value_t = 3)]
    pub gets_per_put: u32,
    /// Report this server process's RSS over time and CPU per phase (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// HS256 secret of the server's tokens (the `--dev` one by default).
    #[arg(long, default_value = crate::serve::DEV_JWT_SECRET, env = "CASHBACK_BENCH_JWT_SECRET")]
    pub jwt_secret: String,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    CitizenPut,
    AwardPeriods,
    IbanPatch,
    CardPut,
    CardGet,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::CitizenPut => "citizen_put",
            Kind::AwardPeriods => "award_periods_get",
            Kind::IbanPatch => "iban_patch",
            Kind::CardPut => "card_put",
            Kind::CardGet => "card_get",
        }
    }
}

/// One unit of the mix, in order.
fn unit(cards: u32, gets_per_put: u32) -> Vec<Kind> {
    let mut u = vec![Kind::CitizenPut, Kind::AwardPeriods, Kind::IbanPatch];
    u.extend(std::iter::repeat_n(Kind::CardPut, cards as usize));
    u.extend(std::iter::repeat_n(Kind::CardGet, (gets_per_put * (1 + cards)) as usize));
    u
}

/// A phase of the schedule: `secs` long, rate going linearly from `from` to `to`.
#[derive(Clone, Debug)]
struct Phase {
    name: &'static str,
    start: f64,
    secs: f64,
    from: f64,
    to: f64,
}

fn phases(a: &LoadtestArgs) -> Vec<Phase> {
    let r = f64::from(a.rate);
    let mut out = Vec::new();
    let mut t = 0.0;
    let mut push = |name, secs: u64, from, to| {
        if secs > 0 {
            out.push(Phase { name, start: t, secs: secs as f64, from, to });
            t += secs as f64;
        }
    };
    push("ramp", a.ramp, r / 10.0, r);
    push("steady", a.steady, r, r);
    if a.overload > 0 {
        push("overload", a.overload, r * a.overload_factor, r * a.overload_factor);
        push("recovery", a.recovery, r, r);
    }
    out
}

/// Arrival rate at `t` seconds, and the phase index; `None` past the end.
fn rate_at(ps: &[Phase], t: f64) -> Option<(usize, f64)> {
    let i = ps.iter().position(|p| t < p.start + p.secs)?;
    let p = &ps[i];
    Some((i, p.from + (p.to - p.from) * ((t - p.start) / p.secs).clamp(0.0, 1.0)))
}

/// How one scheduled request ended.
#[derive(Clone, Copy)]
enum Outcome {
    Answer {
        status: u16,
        retry_after: bool,
    },
    Transport,
    Timeout,
    /// Not sent: `--max-in-flight` requests were outstanding.
    Drop,
}

struct Event {
    phase: usize,
    second: usize,
    kind: Kind,
    latency_us: u64,
    outcome: Outcome,
}

fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, sigfig).expect("histogram bounds")
}

#[derive(Default)]
struct PhaseStats {
    scheduled: u64,
    drops: u64,
    statuses: BTreeMap<u16, u64>,
    missing_retry_after: u64,
    transport: u64,
    timeouts: u64,
    admitted: Option<Histogram<u64>>,
    all: Option<Histogram<u64>>,
}

struct Second {
    scheduled: u64,
    ok: u64,
    rejected: u64,
    other: u64,
    admitted: Histogram<u64>,
}

struct Collected {
    phases: Vec<PhaseStats>,
    seconds: Vec<Second>,
    by_kind: BTreeMap<(Kind, u16), u64>,
}

async fn collect(mut rx: mpsc::UnboundedReceiver<Event>, n_phases: usize, n_seconds: usize) -> Collected {
    let mut c = Collected {
        phases: (0..n_phases)
            .map(|_| PhaseStats { admitted: Some(histogram(3)), all: Some(histogram(3)), ..Default::default() })
            .collect(),
        seconds: (0..n_seconds)
            .map(|_| Second { scheduled: 0, ok: 0, rejected: 0, other: 0, admitted: histogram(2) })
            .collect(),
        by_kind: BTreeMap::new(),
    };
    {
        while let Some(e) = rx.recv().await {
            let p = &mut c.phases[e.phase];
            let s = &mut c.seconds[e.second.min(n_seconds - 1)];
            p.scheduled += 1;
            s.scheduled += 1;
            let us = e.latency_us.clamp(1, 120_000_000);
            match e.outcome {
                Outcome::Answer { status, retry_after } => {
                    *p.statuses.entry(status).or_default() += 1;
                    *c.by_kind.entry((e.kind, status)).or_default() += 1;
                    if let Some(h) = p.all.as_mut() {
                        let _ = h.record(us);
                    }
                    if (200..300).contains(&status) {
                        s.ok += 1;
                        let _ = s.admitted.record(us);
                        if let Some(h) = p.admitted.as_mut() {
                            let _ = h.record(us);
                        }
                    } else if status == 429 || status == 503 {
                        s.rejected += 1;
                        if !retry_after {
                            p.missing_retry_after += 1;
                        }
                    } else {
                        s.other += 1;
                    }
                }
                Outcome::Transport => {
                    p.transport += 1;
                    s.other += 1;
                }
                Outcome::Timeout => {
                    p.timeouts += 1;
                    s.other += 1;
                }
                Outcome::Drop => {
                    p.drops += 1;
                    s.other += 1;
                }
            }
        }
        c
    }
}

/// Anonymous resident memory of a process (heap, stacks: what a leak or an unbounded queue
/// grows), KiB, from Linux /proc. The whole RSS also counts the SQLite file's pages mapped by
/// the readers' memory map, which grow with the database, not with the load.
fn rss_anon_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("RssAnon:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// What the workers need to build any request of the mix.
struct Mix {
    unit: Vec<Kind>,
    auths: Vec<HeaderValue>,
    iban_bodies: Vec<Bytes>,
    /// A card's path with its owner's index in `auths`.
    cards: Vec<(String, usize)>,
    secret: Secret,
    exp_base: u64,
    /// First number of the new citizens enrolled by this run.
    new_citizens_from: u32,
    run_seed: u64,
}

impl Mix {
    /// Request `k` of the schedule: (kind, method, path, auth, body).
    fn request(&self, k: u64) -> anyhow::Result<(Kind, Method, Cow<'_, str>, HeaderValue, Bytes)> {
        let len = self.unit.len() as u64;
        let kind = self.unit[(k % len) as usize];
        let mut rng = Rng(self.run_seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let citizen = rng.below(self.auths.len() as u64) as usize;
        Ok(match kind {
            Kind::CitizenPut => {
                let n = self.new_citizens_from + ((k / len) % 3_000_000) as u32;
                let token = mint_dev_token(&self.secret, &fiscal_code(n), self.exp_base);
                (kind, Method::PUT, Cow::Borrowed("/bpd/io/citizen/v2"), bearer(&token)?, Bytes::from_static(b"{}"))
            }
            Kind::AwardPeriods => (
                kind,
                Method::GET,
                Cow::Borrowed("/bpd/io/award-periods/v2"),
                self.auths[citizen].clone(),
                Bytes::new(),
            ),
            Kind::IbanPatch => (
                kind,
                Method::PATCH,
                Cow::Borrowed("/bpd/io/citizen/v2"),
                self.auths[citizen].clone(),
                self.iban_bodies[citizen].clone(),
            ),
            Kind::CardPut => {
                let path = format!("/bpd/io/payment-instruments/{}", hpan(self.run_seed, usize::MAX - 1, k));
                (kind, Method::PUT, Cow::Owned(path), self.auths[citizen].clone(), Bytes::new())
            }
            Kind::CardGet => {
                let (path, owner) = &self.cards[rng.below(self.cards.len() as u64) as usize];
                (kind, Method::GET, Cow::Borrowed(path.as_str()), self.auths[*owner].clone(), Bytes::new())
            }
        })
    }
}

fn check_args(a: &LoadtestArgs) -> anyhow::Result<()> {
    if !a.target.ip().is_loopback() {
        bail!("--target must be a loopback address (load tests never leave this machine)");
    }
    let total = a.ramp + a.steady + if a.overload > 0 { a.overload + a.recovery } else { 0 };
    if total == 0 || total > MAX_SCHEDULE_S {
        bail!("limits: 1 s ≤ ramp + steady + overload + recovery ≤ {MAX_SCHEDULE_S} s");
    }
    if a.rate == 0 || a.rate > 500_000 || !(1.0..=20.0).contains(&a.overload_factor) {
        bail!("limits: 1 ≤ rate ≤ 500000, 1 ≤ overload-factor ≤ 20");
    }
    if a.max_in_flight == 0 || a.max_in_flight > 20_000 || a.request_timeout == 0 || a.request_timeout > 120 {
        bail!("limits: 1 ≤ max-in-flight ≤ 20000, 1 ≤ request-timeout ≤ 120 s");
    }
    if a.citizens == 0 || a.citizens > 2_000_000 || a.instruments == 0 || a.instruments > 10_000_000 {
        bail!("limits: 1 ≤ citizens ≤ 2000000, 1 ≤ instruments ≤ 10000000");
    }
    if a.cards_per_unit > 10 || a.gets_per_put > 20 {
        bail!("limits: cards-per-unit ≤ 10, gets-per-put ≤ 20");
    }
    Ok(())
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() { 0.0 } else { (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0 }
}

fn latency(h: &Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "count": h.len(), "p50": ms(h, 0.5), "p90": ms(h, 0.9), "p99": ms(h, 0.99), "p999": ms(h, 0.999),
        "max": (h.max() as f64 / 10.0).round() / 100.0,
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub async fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let secret = Secret::new(args.jwt_secret.clone());
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let run_seed = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;

    // Setup (closed loop, not measured): citizens and their cards.
    let started = Instant::now();
    let tokens: Vec<String> =
        (0..args.citizens).map(|n| mint_dev_token(&secret, &fiscal_code(n), now + 7200)).collect();
    let pool = bench::enroll(args.target, Arc::new(tokens.clone()), args.instruments, SETUP_SEED, 32).await?;
    let auths = tokens.iter().map(|t| bearer(t)).collect::<anyhow::Result<Vec<_>>>()?;
    let index: std::collections::HashMap<&str, usize> =
        tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let cards = pool
        .iter()
        .map(|(p, t)| Ok((p.clone(), *index.get(t.as_str()).context("card owner")?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let iban_bodies = (0..args.citizens)
        .map(|n| {
            Bytes::from(
                serde_json::json!({
                    "payoffInstr": IBAN, "payoffInstrType": "IBAN", "accountHolderCF": fiscal_code(n).as_str(),
                    "accountHolderName": "Mario", "accountHolderSurname": "Rossi",
                })
                .to_string(),
            )
        })
        .collect();
    let setup_s = started.elapsed().as_secs_f64();
    eprintln!("setup: {} citizens, {} cards enrolled in {setup_s:.1} s", args.citizens, cards.len());
    // New citizens of this run: a block of numbers of its own (runs on one database differ).
    let new_citizens_from = args.citizens + 1 + ((now % 97) as u32) * 3_000_000;
    let mix = Arc::new(Mix {
        unit: unit(args.cards_per_unit, args.gets_per_put),
        auths,
        iban_bodies,
        cards,
        secret,
        exp_base: now + 7200,
        new_citizens_from,
        run_seed,
    });

    let ps = phases(&args);
    let total_s: f64 = ps.iter().map(|p| p.secs).sum();
    let n_seconds = total_s.ceil() as usize + 1;
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    let collector = tokio::spawn(collect(rx, ps.len(), n_seconds));

    let sem = Arc::new(Semaphore::new(args.max_in_flight));
    let idle: Arc<Mutex<Vec<RawConn>>> = Arc::new(Mutex::new(Vec::new()));
    let timeout = Duration::from_secs(args.request_timeout);
    let start = Instant::now() + Duration::from_millis(100);

    // Samplers: RSS every 250 ms; CPU and load average at phase boundaries.
    let server_pid = args.server_pid;
    let rss: Arc<Mutex<Vec<(f64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let rss_task = server_pid.map(|pid| {
        let rss = rss.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Some(kib) = rss_anon_kib(pid) else { break };
                let t = Instant::now().saturating_duration_since(start).as_secs_f64();
                rss.lock().expect("rss samples").push((t, kib));
            }
        })
    });
    let mut boundaries = vec![(bench::snapshot(server_pid), bench::loadavg())];

    eprintln!(
        "schedule: {} ({} s); unit of {} requests",
        ps.iter()
            .map(|p| format!("{} {} s at {:.0}→{:.0}/s", p.name, p.secs, p.from, p.to))
            .collect::<Vec<_>>()
            .join(", "),
        total_s,
        mix.unit.len()
    );
    tokio::time::sleep_until(start.into()).await;
    let mut t = 0.0f64;
    let mut k: u64 = 0;
    let mut phase_now = 0;
    while let Some((phase, rate)) = rate_at(&ps, t) {
        if phase != phase_now {
            boundaries.push((bench::snapshot(server_pid), bench::loadavg()));
            phase_now = phase;
            eprintln!("phase {} at {t:.1} s", ps[phase].name);
        }
        let due = start + Duration::from_secs_f64(t);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let second = t as usize;
        match sem.clone().try_acquire_owned() {
            Err(_) => {
                let _ = tx.send(Event {
                    phase,
                    second,
                    kind: mix.unit[(k % mix.unit.len() as u64) as usize],
                    latency_us: 0,
                    outcome: Outcome::Drop,
                });
            }
            Ok(permit) => {
                let (mix, idle, tx, target) = (mix.clone(), idle.clone(), tx.clone(), args.target);
                tokio::spawn(async move {
                    let (kind, outcome) = match mix.request(k) {
                        Ok((kind, method, path, auth, body)) => {
                            let attempt = async {
                                let conn = idle.lock().expect("idle connections").pop();
                                let mut conn = match conn {
                                    Some(c) => c,
                                    None => RawConn::connect(target).await?,
                                };
                                let mut request = Vec::with_capacity(512 + body.len());
                                rawhttp::write_request(
                                    &mut request,
                                    method.as_str(),
                                    &path,
                                    Some(auth.as_bytes()),
                                    &body,
                                );
                                let a = conn.exchange(&request).await?;
                                let answer = (a.status, a.retry_after);
                                if !conn.closed() {
                                    idle.lock().expect("idle connections").push(conn);
                                }
                                Ok::<_, anyhow::Error>(answer)
                            };
                            match tokio::time::timeout(timeout, attempt).await {
                                Ok(Ok((status, retry_after))) => (kind, Outcome::Answer { status, retry_after }),
                                Ok(Err(_)) => (kind, Outcome::Transport),
                                Err(_) => (kind, Outcome::Timeout),
                            }
                        }
                        Err(_) => (Kind::CardGet, Outcome::Transport),
                    };
                    let latency_us = Instant::now().saturating_duration_since(due).as_micros() as u64;
                    let _ = tx.send(Event { phase, second, kind, latency_us, outcome });
                    drop(permit);
                });
            }
        }
        k += 1;
        t += 1.0 / rate;
    }
    let scheduled_until = Instant::now();
    // The last answers (bounded by the client timeout).
    let drained = tokio::time::timeout(timeout + Duration::from_secs(1), sem.acquire_many(args.max_in_flight as u32))
        .await
        .is_ok();
    boundaries.push((bench::snapshot(server_pid), bench::loadavg()));
    drop(tx);
    let c = collector.await?;
    if let Some(t) = rss_task {
        t.abort();
    }
    let rss = rss.lock().expect("rss samples").clone();

    // Report.
    let mut phase_reports = Vec::new();
    for (i, (p, s)) in ps.iter().zip(&c.phases).enumerate() {
        let answered: u64 = s.statuses.values().sum();
        let ok: u64 = s.statuses.iter().filter(|(k, _)| (200..300).contains(*k)).map(|(_, v)| v).sum();
        let r429 = s.statuses.get(&429).copied().unwrap_or(0);
        let r503 = s.statuses.get(&503).copied().unwrap_or(0);
        let other = answered - ok - r429 - r503;
        let in_phase: Vec<u64> =
            rss.iter().filter(|(t, _)| *t >= p.start && *t < p.start + p.secs).map(|(_, k)| *k).collect();
        let (a, b) = (&boundaries[i], &boundaries[(i + 1).min(boundaries.len() - 1)]);
        phase_reports.push(serde_json::json!({
            "phase": p.name,
            "seconds": p.secs,
            "offered_rps": round1(s.scheduled as f64 / p.secs),
            "target_rps": { "from": p.from, "to": p.to },
            "scheduled": s.scheduled,
            "client_drops": s.drops,
            "answered": answered,
            "throughput_rps": round1(answered as f64 / p.secs),
            "goodput_rps": round1(ok as f64 / p.secs),
            "status_mix": { "2xx": ok, "429": r429, "503": r503, "other": other },
            "statuses": s.statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            "rejections_without_retry_after": s.missing_retry_after,
            "transport_errors": s.transport,
            "client_timeouts": s.timeouts,
            "latency_admitted_ms": s.admitted.as_ref().map(latency),
            "latency_all_answers_ms": s.all.as_ref().map(latency),
            "server_rss_anon_mib": if in_phase.is_empty() { serde_json::Value::Null } else { serde_json::json!({
                "first": round1(in_phase[0] as f64 / 1024.0),
                "max": round1(*in_phase.iter().max().unwrap_or(&0) as f64 / 1024.0),
                "last": round1(in_phase[in_phase.len() - 1] as f64 / 1024.0),
            }) },
            "cpu": bench::cpu_report(&a.0, &b.0),
            "loadavg": { "start": a.1, "end": b.1 },
        }));
    }
    let timeline: Vec<serde_json::Value> = c
        .seconds
        .iter()
        .enumerate()
        .filter(|(_, s)| s.scheduled > 0)
        .map(|(i, s)| {
            let rss = rss.iter().rev().find(|(t, _)| *t < (i + 1) as f64).map(|(_, k)| round1(*k as f64 / 1024.0));
            serde_json::json!({
                "s": i, "phase": rate_at(&ps, i as f64 + 0.5).map(|(p, _)| ps[p].name),
                "scheduled": s.scheduled, "ok": s.ok, "rejected": s.rejected, "other": s.other,
                "p50_ms": ms(&s.admitted, 0.5), "p99_ms": ms(&s.admitted, 0.99), "rss_anon_mib": rss,
            })
        })
        .collect();
    // Recovery: the first second after the overload from which every second is "normal": no
    // rejection, no error, and a per-second p99 no worse than the worst second of the steady
    // phase (+20 %, +1 ms): per-second p99s vary by 2× from second to second on this VM.
    let recovery = ps.iter().position(|p| p.name == "recovery").and_then(|ri| {
        let st = &ps[ps.iter().position(|p| p.name == "steady")?];
        let steady_seconds = &c.seconds[st.start as usize..(st.start + st.secs) as usize];
        let base = steady_seconds.iter().map(|s| ms(&s.admitted, 0.99)).fold(0.0, f64::max);
        let from = ps[ri].start as usize;
        let to = (ps[ri].start + ps[ri].secs) as usize;
        let normal = |s: &Second| s.rejected == 0 && s.other == 0 && ms(&s.admitted, 0.99) <= base * 1.2 + 1.0;
        let back = (from..to).find(|&i| (i..to).all(|j| normal(&c.seconds[j])));
        Some(serde_json::json!({
            "steady_worst_second_p99_ms": base,
            "first_second_p99_ms": ms(&c.seconds[from].admitted, 0.99),
            "first_second_p50_ms": ms(&c.seconds[from].admitted, 0.5),
            "normal_from_second_after_overload": back.map(|b| b - from),
        }))
    });
    let report = serde_json::json!({
        "target": args.target.to_string(),
        "rate": args.rate,
        "overload_factor": if args.overload > 0 { serde_json::json!(args.overload_factor) } else { serde_json::Value::Null },
        "max_in_flight": args.max_in_flight,
        "mix_unit": mix.unit.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "setup": { "citizens": args.citizens, "cards": mix.cards.len(), "seconds": round1(setup_s) },
        "schedule_overrun_ms": (scheduled_until.saturating_duration_since(start).as_secs_f64() - total_s).max(0.0) * 1000.0,
        "drained": drained,
        "phases": phase_reports,
        "recovery": recovery,
        "by_kind": c.by_kind.iter().map(|((k, st), v)| (format!("{} {st}", k.name()), *v)).collect::<BTreeMap<_, _>>(),
        "timeline": timeline,
    });
    for p in report["phases"].as_array().into_iter().flatten() {
        eprintln!(
            "{:>9}: offered {:>8} /s, goodput {:>8} /s, drops {}, mix {}, no Retry-After {}, admitted p50 {} ms p99 {} ms, rss anon {} MiB",
            p["phase"].as_str().unwrap_or(""),
            p["offered_rps"],
            p["goodput_rps"],
            p["client_drops"],
            p["status_mix"],
            p["rejections_without_retry_after"],
            p["latency_admitted_ms"]["p50"],
            p["latency_admitted_ms"]["p99"],
            p["server_rss_anon_mib"],
        );
    }
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(overload: u64) -> LoadtestArgs {
        LoadtestArgs {
            target: "127.0.0.1:1".parse().unwrap(),
            rate: 1000,
            ramp: 10,
            steady: 20,
            overload,
            overload_factor: 3.0,
            recovery: 5,
            max_in_flight: 100,
            request_timeout: 5,
            citizens: 10,
            instruments: 10,
            cards_per_unit: 2,
            gets_per_put: 3,
            server_pid: None,
            jwt_secret: "x".into(),
        }
    }

    #[test]
    fn the_unit_has_three_gets_per_put() {
        let u = unit(2, 3);
        let count = |k| u.iter().filter(|&&x| x == k).count();
        assert_eq!(u.len(), 14);
        assert_eq!((count(Kind::CitizenPut), count(Kind::CardPut), count(Kind::CardGet)), (1, 2, 9));
        assert_eq!((count(Kind::AwardPeriods), count(Kind::IbanPatch)), (1, 1));
    }

    #[test]
    fn the_schedule_ramps_then_holds_then_overloads() {
        let ps = phases(&args(60));
        assert_eq!(ps.iter().map(|p| p.name).collect::<Vec<_>>(), ["ramp", "steady", "overload", "recovery"]);
        assert_eq!(rate_at(&ps, 0.0), Some((0, 100.0)));
        assert_eq!(rate_at(&ps, 5.0), Some((0, 550.0)));
        assert_eq!(rate_at(&ps, 15.0), Some((1, 1000.0)));
        assert_eq!(rate_at(&ps, 31.0), Some((2, 3000.0)));
        assert_eq!(rate_at(&ps, 92.0), Some((3, 1000.0)));
        assert_eq!(rate_at(&ps, 95.0), None);
        assert_eq!(phases(&args(0)).len(), 2, "no overload, no recovery phase");
    }

    #[test]
    fn only_loopback_and_bounded_runs() {
        let mut a = args(0);
        assert!(check_args(&a).is_ok());
        a.target = "10.0.0.1:8080".parse().unwrap();
        assert!(check_args(&a).unwrap_err().to_string().contains("loopback"));
        let mut a = args(0);
        a.steady = 10_000;
        assert!(check_args(&a).is_err());
    }
}
