//! `cashback simulate`: a deterministic synthetic programme driven through the real API, checked
//! citizen by citizen against an independent reference model (`reference.rs`).
//!
//! 1. A fresh SQLite file with one award period of `--days` days (minimum 10 transactions,
//!    minimum amount €1, the first 5% win the Super Cashback), an acquirer and an issuer key.
//! 2. The server's router on a loopback port, in this process, with a simulated clock: the
//!    enrolments happen on the period's first day, each day's file is processed the next night.
//! 3. Enrolment through the API: most citizens through the citizen app (PUT citizen, PUT each
//!    card's hpan), `--issuer-percent` through their bank (PUT /bpd/hb/citizens/v2, PUT card by
//!    clear PAN, hashed by the platform).
//! 4. One acquirer file a day through the acquirer API (SAS, then PUT): the demo's spend
//!    distribution, full reversals and partial refunds (some arriving the next day), micro-payment
//!    abuse under the €1 minimum, malformed rows; some files a day late, some sent twice.
//! 5. Every citizen's cashback, count and rank read through the citizen API, then the period
//!    closed and every award read, all compared with the reference model. Any mismatch fails.

mod reference;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cashback_api::state::{Clock, Secret};
use cashback_domain::{AwardPeriod, FiscalCode, Money, Pan, calendar};
use cashback_store::{AwardKind, CredentialKind};
use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::{Date, Duration as TimeDuration, OffsetDateTime, Time};
use tokio::sync::Semaphore;

use crate::bench_ingest::{Rng, citizen_code};
use crate::demo::{payments_per_ten_days, ticket_cents};
use crate::serve::{DEV_JWT_SECRET, DEV_SALT, build_state, create_credential, init_cli_tracing, open_store};
use reference::{Expected, Row, Rules};

/// The simulated award period.
pub const SIM_PERIOD_ID: i64 = 300;
const ABI: &str = "12345";
const BANK: &str = "SIMBANK";
const MAX_CITIZENS: u32 = 9_000_000;
const MAX_DAYS: u32 = 181;
/// Grace days: room for files a day late.
const GRACE: u32 = 3;
/// Payments below this (net) do not count: the abusive micro-payments.
const MIN_AMOUNT_CENTS: i64 = 100;

#[derive(Args)]
pub struct SimulateArgs {
    /// The simulation's SQLite file: deleted and created afresh.
    #[arg(long, default_value = "cashback-sim.db")]
    pub file: PathBuf,
    #[arg(long, default_value_t = 2_000)]
    pub citizens: u32,
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Citizens enrolled through their bank (the issuer API) rather than the citizen app.
    #[arg(long, default_value_t = 30)]
    pub issuer_percent: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

/// The period: day 0 is `days + GRACE + 1` days before today, so the close day is today.
fn sim_period(today: Date, days: u32, citizens: u32) -> anyhow::Result<AwardPeriod> {
    let start = today - TimeDuration::days(i64::from(days + GRACE + 1));
    let mut p = crate::demo::demo_period(today, days, citizens)?;
    p.id = SIM_PERIOD_ID;
    p.start = start;
    p.end = start + TimeDuration::days(i64::from(days) - 1);
    p.grace_period_days = GRACE;
    p.scoring.min_amount = Some(Money::from_cents(MIN_AMOUNT_CENTS));
    p.validate().map_err(|e| anyhow::anyhow!("simulated period: {e}"))?;
    Ok(p)
}

fn rules(p: &AwardPeriod) -> Rules {
    Rules {
        percent: i64::from(p.cashback_percentage),
        max_evaluated: p.max_transaction_evaluated.cents(),
        max_transaction_cashback: p.max_transaction_cashback.cents(),
        max_period_cashback: p.max_period_cashback.cents(),
        min_amount: MIN_AMOUNT_CENTS,
        min_count: p.min_transaction_number,
        positions: p.min_position,
        prize: p.max_amount.cents(),
    }
}

/// A Luhn-valid 16-digit PAN for card `k`.
pub fn pan_of(k: u64) -> String {
    let body = format!("4{:014}", k);
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// The simulated citizens: fiscal code, channel, cards (clear PAN, hpan).
struct Citizen {
    cf: FiscalCode,
    by_issuer: bool,
    cards: Vec<(String, String)>,
}

fn citizens(n: u32, seed: u64, issuer_percent: u64) -> anyhow::Result<Vec<Citizen>> {
    (0..n)
        .map(|i| {
            let mut rng = Rng(seed ^ u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let cards = (0..1 + rng.below(3))
                .map(|j| {
                    let pan = pan_of(3 * u64::from(i) + j);
                    let hpan = Pan::parse(&pan, "pan").map_err(|e| anyhow::anyhow!("{e}"))?.hash(DEV_SALT);
                    Ok((pan, hpan.as_str().to_owned()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(Citizen { cf: citizen_code(i)?, by_issuer: rng.below(100) < issuer_percent, cards })
        })
        .collect()
}

/// One day's file: its lines, and the eligible rows for the reference model. Reversals kept for
/// the next day's file are returned apart.
struct DayRows {
    lines: Vec<String>,
    rows: Vec<Row>,
    held: Vec<(String, Row)>,
    malformed: u64,
}

fn line(hpan: &str, at_ms: i64, op: &str, cents: i64, id: &str, corr: u64, merchant: u64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000).expect("instant in range");
    let ts =
        format!("{}T{:02}:{:02}:{:02}.{:03}+00:00", at.date(), at.hour(), at.minute(), at.second(), at.millisecond());
    format!("{ABI};{op};01;{hpan};{ts};{id};ISS{id};C{corr};{cents};978;ACQ1;M{merchant};T{merchant};40236010;5411")
}

fn day_rows(day: Date, index: u32, people: &[Citizen], seed: u64) -> DayRows {
    let mut rng = Rng(seed ^ u64::from(index + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    // (citizen, card, cents, merchant): payments first, instants assigned after a shuffle.
    let mut payments: Vec<(u32, usize, i64, u64)> = Vec::new();
    for (n, c) in people.iter().enumerate() {
        let n = n as u32;
        let rate = payments_per_ten_days(n, seed);
        let count = (0..10).filter(|_| rng.below(100) < rate).count();
        for _ in 0..count {
            let card = rng.below(c.cards.len() as u64) as usize;
            payments.push((n, card, ticket_cents(&mut rng) as i64, rng.below(400)));
        }
        // One citizen in a hundred splits purchases into micro-payments under the €1 minimum.
        if n % 100 == 7 {
            for _ in 0..5 {
                payments.push((n, 0, 10 + rng.below(80) as i64, 999));
            }
        }
    }
    for i in (1..payments.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        payments.swap(i, j);
    }
    let base = day.with_time(Time::from_hms(6, 0, 0).expect("06:00")).assume_utc().unix_timestamp() * 1000;
    // 3 ms apart: the reversal of a payment goes 1 ms after it, every instant is distinct.
    let step = (14 * 3_600_000 / (payments.len() as i64 + 1)).clamp(3, 3_000) / 3 * 3;
    let mut out = DayRows { lines: Vec::new(), rows: Vec::new(), held: Vec::new(), malformed: 0 };
    for (k, &(n, card, cents, merchant)) in payments.iter().enumerate() {
        let at = base + k as i64 * step;
        let hpan = &people[n as usize].cards[card].1;
        let corr = (u64::from(index) << 32) | k as u64;
        let id = format!("S{index}K{k}");
        out.lines.push(line(hpan, at, "00", cents, &id, corr, merchant));
        out.rows.push(Row { citizen: n, at_ms: at, reversal: false, cents, correlation: corr });
        let refund = match rng.below(1000) {
            0..=14 => Some(cents),
            15..=24 if cents >= 300 => Some(cents / 3),
            _ => None,
        };
        if let Some(r) = refund {
            let row = Row { citizen: n, at_ms: at + 1, reversal: true, cents: r, correlation: corr };
            let l = line(hpan, at + 1, "01", r, &format!("{id}R"), corr, merchant);
            if rng.below(3) == 0 {
                out.held.push((l, row));
            } else {
                out.lines.push(l);
                out.rows.push(row);
            }
        }
    }
    let any = &people[0].cards[0].1;
    out.lines.push(line(any, base, "00", 1000, &format!("BAD{index}A"), 1, 1).replace("+00:00", "+25:00"));
    out.lines.push(line("not-a-hash", base, "00", 1000, &format!("BAD{index}B"), 1, 1));
    out.lines.push(line(any, base, "00", 1000, &format!("BAD{index}C"), 1, 1).replace(";978;", ";840;"));
    out.malformed = 3;
    out
}

/// A loopback HTTP client that waits out 429/503 (`Retry-After`), as a real client does.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: (&str, &str),
        body: Option<String>,
    ) -> anyhow::Result<(StatusCode, String)> {
        for _ in 0..50 {
            let mut rb = self.http.request(method.clone(), format!("{}{path}", self.base)).header(auth.0, auth.1);
            if let Some(b) = &body {
                rb = rb.header("Content-Type", "application/json").body(b.clone());
            }
            let r = rb.send().await.with_context(|| format!("{method} {path}"))?;
            let status = r.status();
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
                let secs: u64 = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
                tokio::time::sleep(Duration::from_millis(secs.min(5) * 1000 / 4 + 10)).await;
                continue;
            }
            return Ok((status, r.text().await?));
        }
        bail!("{method} {path}: still refused after 50 tries")
    }

    async fn ok(&self, method: Method, path: &str, auth: (&str, &str), body: Option<String>) -> anyhow::Result<Value> {
        let (status, text) = self.call(method.clone(), path, auth, body).await?;
        if !status.is_success() {
            bail!("{method} {path}: {status} {text}");
        }
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }
}

/// Euros as the API writes them (a JSON number) → cents, exactly.
fn cents_of(v: &Value) -> anyhow::Result<i64> {
    let s = v.to_string();
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    if frac.len() > 2 {
        bail!("more than two decimals: {s}");
    }
    let sign = if int.starts_with('-') { -1 } else { 1 };
    let whole: i64 = int.trim_start_matches('-').parse().with_context(|| format!("euros: {s}"))?;
    let part: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<2}").parse()? };
    Ok(sign * (whole * 100 + part))
}

/// Run `f` over `0..n` with at most `limit` at once; the first error stops the run.
async fn each<F, Fut>(n: usize, limit: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(limit.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let fut = f(i);
        set.spawn(async move {
            let r = fut.await;
            drop(permit);
            r
        });
        while let Some(done) = set.try_join_next() {
            done??;
        }
    }
    while let Some(done) = set.join_next().await {
        done??;
    }
    Ok(())
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    init_cli_tracing();
    if args.citizens == 0 || args.citizens > MAX_CITIZENS {
        bail!("--citizens must be from 1 to {MAX_CITIZENS}");
    }
    if args.days == 0 || args.days > MAX_DAYS {
        bail!("--days must be from 1 to {MAX_DAYS}");
    }
    if args.issuer_percent > 100 {
        bail!("--issuer-percent must be from 0 to 100");
    }
    let started = Instant::now();
    let mut phases: Vec<(&str, f64)> = Vec::new();
    let mut lap = Instant::now();
    let mut phase = |name: &'static str, lap: &mut Instant| {
        let secs = (lap.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        tracing::info!(phase = name, secs, "simulation phase done");
        phases.push((name, secs));
        *lap = Instant::now();
    };
    let url = crate::demo::fresh_sqlite(&args.file)?;
    let real_now = OffsetDateTime::now_utc();
    let today = calendar::rome_date(real_now);
    let period = sim_period(today, args.days, args.citizens)?;
    let rules = rules(&period);
    let people = citizens(args.citizens, args.seed, args.issuer_percent)?;

    // 1. The programme and the keys.
    let mut cfg = crate::config::load(None)?;
    cfg.acquirer.snapshot_max_age_secs = 0;
    let store = open_store(&url, &cfg).await?;
    store.seed_award_periods(&cashback_domain::period::default_programme()).await?;
    store.upsert_award_period(&period).await?;
    let (_, acq_key) = create_credential(&store, CredentialKind::Acquirer, ABI.into(), None, real_now).await?;
    let (_, bank_key) = create_credential(&store, CredentialKind::Issuer, BANK.into(), None, real_now).await?;
    let (_, op_key) = create_credential(&store, CredentialKind::Operator, "simulate".into(), None, real_now).await?;

    // 2. The server, on a simulated clock.
    let micros = Arc::new(AtomicI64::new(0));
    let set_clock = |t: OffsetDateTime| micros.store((t.unix_timestamp_nanos() / 1_000) as i64, Ordering::SeqCst);
    let clock: Clock = {
        let m = micros.clone();
        Arc::new(move || {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(m.load(Ordering::SeqCst)) * 1_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        })
    };
    let day_start = |d: Date, h: u8| d.with_time(Time::from_hms(h, 0, 0).expect("hour")).assume_utc();
    set_clock(day_start(period.start, 0) - TimeDuration::hours(2));
    let serve_args = crate::ServeArgs {
        listen: None,
        db: crate::DbArgs { database: Some(url.clone()), config: None },
        database_replica: None,
        dev: true,
        salt: None,
        jwt_secret: None,
        introspection_url: None,
        iban_check_url: None,
        tls: Default::default(),
    };
    let (state, ranking) = build_state(&serve_args, &cfg, true, store.clone(), store.clone(), clock, None)?;
    state.refresh_periods().await?;
    tokio::spawn(ranking.clone().run_refresher(store.clone()));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let app = cashback_api::router(state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let api = Api {
        http: reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(600)).build()?,
        base: format!("http://{addr}"),
    };
    let secret = Secret::new(DEV_JWT_SECRET);
    let token_of = |cf: &FiscalCode| {
        cashback_api::auth::mint_dev_token(&secret, cf, OffsetDateTime::now_utc().unix_timestamp() as u64)
    };
    let tokens: Arc<Vec<String>> = Arc::new(people.iter().map(|c| token_of(&c.cf)).collect());
    let people = Arc::new(people);

    // 3. Enrolment, through the API, on the period's first day.
    let by_issuer = people.iter().filter(|c| c.by_issuer).count();
    each(people.len(), args.concurrency, |i| {
        let (api, people, tokens, bank_key) = (api.clone(), people.clone(), tokens.clone(), bank_key.clone());
        async move {
            let c = &people[i];
            if c.by_issuer {
                let key = ("Ocp-Apim-Subscription-Key", bank_key.as_str());
                api.ok(Method::PUT, "/bpd/hb/citizens/v2", key, Some(json!({ "id": c.cf.as_str() }).to_string()))
                    .await?;
                for (pan, _) in &c.cards {
                    let body = json!({ "id": pan, "fiscalCode": c.cf.as_str() }).to_string();
                    api.ok(Method::PUT, "/bpd/hb/payment-instruments/card", key, Some(body)).await?;
                }
            } else {
                let bearer = format!("Bearer {}", tokens[i]);
                let auth = ("Authorization", bearer.as_str());
                api.ok(Method::PUT, "/bpd/io/citizen/v2", auth, Some("{}".into())).await?;
                for (_, hpan) in &c.cards {
                    api.ok(Method::PUT, &format!("/bpd/io/payment-instruments/{hpan}"), auth, None).await?;
                }
            }
            Ok(())
        }
    })
    .await?;
    let cards: usize = people.iter().map(|c| c.cards.len()).sum();
    phase("enrolment", &mut lap);

    // 4. The acquirer files, each processed the night after its day (some a day late).
    let mut rows: Vec<Row> = Vec::new();
    let mut pending: Vec<(String, Vec<String>, u64)> = Vec::new(); // late files
    let mut held: Vec<(String, Row)> = Vec::new(); // reversals for the next file
    let (mut sent_rows, mut late_files, mut twice, mut rejected) = (0u64, 0u32, 0u32, 0u64);
    let upload = async |name: &str, body: String| crate::demo::upload(&api.http, &api.base, &acq_key, name, body).await;
    let mut rng = Rng(args.seed ^ 0x1a7e);
    for d in 0..args.days {
        let day = period.start + TimeDuration::days(i64::from(d));
        set_clock(day_start(day + TimeDuration::days(1), 1) + TimeDuration::minutes(i64::from(d % 50)));
        let mut f = day_rows(day, d, &people, args.seed);
        for (l, r) in held.drain(..) {
            f.lines.push(l);
            f.rows.push(r);
        }
        held = std::mem::take(&mut f.held);
        sent_rows += f.lines.len() as u64;
        rows.extend(f.rows);
        let name = format!("CSTAR.{ABI}.TRNLOG.{}.230000.001.csv", day.to_string().replace('-', ""));
        let body = f.lines.join("\n") + "\n";
        // One file in ten waits for the next night; the others go now, with yesterday's late one.
        let late = d + 1 < args.days && rng.below(10) == 0;
        for (n, b, malformed) in pending.drain(..) {
            let r = upload(&n, b.join("\n") + "\n").await?;
            check_report(&r, malformed, &mut rejected)?;
        }
        if late {
            late_files += 1;
            pending.push((name, f.lines, f.malformed));
            continue;
        }
        let report = upload(&name, body.clone()).await?;
        check_report(&report, f.malformed, &mut rejected)?;
        if rng.below(20) == 0 {
            // Sent again under another name: every row is a duplicate, nothing counts twice.
            twice += 1;
            let again = upload(&name.replace(".001.csv", ".002.csv"), body).await?;
            let wellformed = f.lines.len() as u64 - f.malformed;
            if again["duplicates"].as_u64() != Some(wellformed) || again["accepted"].as_u64() != Some(0) {
                bail!("file sent twice: {again}");
            }
            rejected += again["rejected"].as_u64().unwrap_or(0);
        }
    }
    if !held.is_empty() {
        // The last day's held reversals travel alone.
        let day = period.end + TimeDuration::days(1);
        set_clock(day_start(day, 3));
        let name = format!("CSTAR.{ABI}.TRNLOG.{}.230000.009.csv", day.to_string().replace('-', ""));
        let lines: Vec<String> = held.iter().map(|(l, _)| l.clone()).collect();
        sent_rows += lines.len() as u64;
        rows.extend(held.drain(..).map(|(_, r)| r));
        let report = upload(&name, lines.join("\n") + "\n").await?;
        check_report(&report, 0, &mut rejected)?;
    }
    phase("files", &mut lap);

    // 5. The reference model, then every citizen through the citizen API.
    let expected = Arc::new(reference::expect(&rules, &rows));
    let participants = expected.len() as u64;
    let op = ("Ocp-Apim-Subscription-Key", op_key.as_str());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, text) =
            api.call(Method::GET, &format!("/bpd/ops/award-periods/{SIM_PERIOD_ID}/ranking?top=0"), op, None).await?;
        if status.is_success() && serde_json::from_str::<Value>(&text)?["participants"].as_u64() == Some(participants) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the ranking did not reach {participants} participants: {status} {text}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mismatches = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    each(people.len(), args.concurrency, |i| {
        let (api, tokens, expected, mismatches, people) =
            (api.clone(), tokens.clone(), expected.clone(), mismatches.clone(), people.clone());
        async move {
            let bearer = format!("Bearer {}", tokens[i]);
            let auth = ("Authorization", bearer.as_str());
            let want = expected.get(&(i as u32)).cloned().unwrap_or_default();
            let total = api
                .ok(
                    Method::GET,
                    &format!("/bpd/io/winning-transactions/total-cashback?awardPeriodId={SIM_PERIOD_ID}"),
                    auth,
                    None,
                )
                .await?;
            let got_cashback = cents_of(&total["totalCashback"])?;
            let got_count = total["transactionNumber"].as_u64().unwrap_or(u64::MAX) as u32;
            let mut problems = Vec::new();
            if (got_cashback, got_count) != (want.cashback, want.count) {
                problems.push(format!(
                    "cashback/count {got_cashback}/{got_count}, expected {}/{}",
                    want.cashback, want.count
                ));
            }
            if want.count > 0 {
                let r = api
                    .ok(Method::GET, &format!("/bpd/io/citizen/v2/ranking?awardPeriodId={SIM_PERIOD_ID}"), auth, None)
                    .await?;
                let rank = r.as_array().and_then(|a| a.first()).and_then(|x| x["ranking"].as_u64()).map(|x| x as u32);
                if rank != want.rank {
                    problems.push(format!("rank {rank:?}, expected {:?}", want.rank));
                }
            }
            if !problems.is_empty() {
                mismatches.lock().expect("lock").push(format!("{}: {}", people[i].cf.as_str(), problems.join("; ")));
            }
            Ok(())
        }
    })
    .await?;
    phase("check totals and ranks", &mut lap);

    // 6. The close, on its day, and every award.
    set_clock(day_start(calendar::rome_date(real_now), 3).min(real_now));
    let close_now = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros.load(Ordering::SeqCst)) * 1_000)?;
    let closed = store.close_period(&period, crate::period::render_notice, close_now).await?;
    let summary = *closed.summary();
    phase("close", &mut lap);
    let mut owed = 0i64;
    for (i, c) in people.iter().enumerate() {
        let want: Expected = expected.get(&(i as u32)).cloned().unwrap_or_default();
        owed += want.award;
        let awards = store.citizen_awards(&c.cf).await?;
        let got: i64 = awards
            .iter()
            .filter(|a| a.award_period_id == SIM_PERIOD_ID && a.kind == AwardKind::Award)
            .map(|a| a.amount.cents())
            .sum();
        if got != want.award {
            mismatches.lock().expect("lock").push(format!("{}: award {got}, expected {}", c.cf.as_str(), want.award));
        }
    }
    phase("check awards", &mut lap);
    server.abort();
    store.close().await;

    let mismatches = std::mem::take(&mut *mismatches.lock().expect("lock"));
    let report = json!({
        "citizens": args.citizens, "byIssuer": by_issuer, "cards": cards, "days": args.days, "seed": args.seed,
        "rowsSent": sent_rows, "eligibleRows": rows.len(), "rejectedRows": rejected, "lateFiles": late_files,
        "filesSentTwice": twice, "participants": participants,
        "awards": summary.awards, "superCashbackWinners": summary.super_cashback_winners,
        "owedCents": summary.amount.cents(), "expectedOwedCents": owed,
        "mismatches": mismatches.len(),
        "seconds": phases.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "totalSeconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    println!("{report}");
    if !mismatches.is_empty() || summary.amount.cents() != owed {
        for m in mismatches.iter().take(20) {
            eprintln!("mismatch: {m}");
        }
        bail!("{} citizens differ from the reference model", mismatches.len());
    }
    Ok(())
}

fn check_report(report: &Value, malformed: u64, rejected: &mut u64) -> anyhow::Result<()> {
    if report["status"] != "DONE" || report["rejected"].as_u64() != Some(malformed) || report["ineligible"] != 0 {
        bail!("unexpected file report: {report}");
    }
    *rejected += malformed;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pans_are_luhn_valid_and_distinct() {
        let a = pan_of(0);
        let b = pan_of(1);
        assert_ne!(a, b);
        for k in [0, 1, 42, 8_999_999 * 3] {
            assert!(Pan::parse(&pan_of(k), "pan").is_ok(), "{}", pan_of(k));
        }
    }

    #[test]
    fn euros_to_cents_exactly() {
        assert_eq!(cents_of(&json!(21.2)).unwrap(), 2120);
        assert_eq!(cents_of(&json!(0)).unwrap(), 0);
        assert_eq!(cents_of(&json!(150)).unwrap(), 15_000);
        assert_eq!(cents_of(&json!(0.07)).unwrap(), 7);
        assert_eq!(cents_of(&json!(-1.5)).unwrap(), -150);
        assert!(cents_of(&json!(0.001)).is_err());
    }

    #[test]
    fn day_rows_have_distinct_instants_and_reference_rows() {
        let people = citizens(500, 3, 30).unwrap();
        let d = day_rows(time::macros::date!(2026 - 03 - 02), 0, &people, 3);
        let mut instants: Vec<i64> = d.rows.iter().chain(d.held.iter().map(|(_, r)| r)).map(|r| r.at_ms).collect();
        let n = instants.len();
        instants.sort_unstable();
        instants.dedup();
        assert_eq!(instants.len(), n, "distinct instants");
        assert_eq!(d.lines.len(), d.rows.len() + d.malformed as usize);
        assert!(d.rows.iter().any(|r| r.reversal) || !d.held.is_empty(), "some reversals");
        assert!(d.rows.iter().any(|r| r.cents < MIN_AMOUNT_CENTS), "some micro-payments");
    }
}
