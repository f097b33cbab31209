//! `cashback bench`: a closed-loop load generator for the enrollment benchmark.
//!
//! Workload (documented in docs/benchmarks.md): `--citizens` adults are enrolled first (PUT
//! /bpd/io/citizen) with tokens minted for a `--dev` server; then `--connections` keep-alive
//! HTTP/1.1 connections each send requests back to back for `--duration` seconds:
//! * `put`: PUT /bpd/io/payment-instruments/{hpan} with a new random hpan every request;
//! * `get`: GET /bpd/io/payment-instruments/{hpan} of `--instruments` hpans enrolled beforehand.
//!
//! Latency is recorded per request in an HdrHistogram (µs). Only loopback targets are allowed;
//! the run is bounded in time and stops by itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
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
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Scenario {
    Put,
    Get,
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
    /// Citizens to enroll and spread requests over.
    #[arg(long, default_value_t = 1000)]
    pub citizens: u32,
    /// `get`: instruments enrolled beforehand.
    #[arg(long, default_value_t = 20_000)]
    pub instruments: u32,
    /// HS256 secret of the server's tokens (the `--dev` one by default).
    #[arg(long, default_value = crate::serve::DEV_JWT_SECRET, env = "CASHBACK_BENCH_JWT_SECRET")]
    pub jwt_secret: String,
}

/// An adult's valid fiscal code derived from `n`.
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

fn hpan(seed: u64, conn: usize, n: u64) -> String {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update((conn as u64).to_le_bytes());
    h.update(n.to_le_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send(sender: &mut SendRequest<Full<Bytes>>, method: Method, path: &str, token: &str) -> anyhow::Result<u16> {
    sender.ready().await?;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

struct Outcome {
    hist: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !args.target.ip().is_loopback() {
        bail!("--target must be a loopback address");
    }
    if args.duration > 3600 || args.connections == 0 || args.connections > 10_000 || args.citizens == 0 {
        bail!("limits: duration ≤ 3600 s, 1 ≤ connections ≤ 10000, citizens ≥ 1");
    }
    let secret = Secret::new(args.jwt_secret.clone());
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let tokens: Vec<String> =
        (0..args.citizens).map(|n| mint_dev_token(&secret, &fiscal_code(n), now + 7200)).collect();
    let seed = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;

    // Setup: enroll citizens (and instruments for `get`), spread over the connections.
    eprintln!("setup: enrolling {} citizens", args.citizens);
    let setup_conns = args.connections.min(32);
    let mut joins = Vec::new();
    for c in 0..setup_conns {
        let tokens = tokens.clone();
        let (target, scenario, instruments) = (args.target, args.scenario, args.instruments);
        joins.push(tokio::spawn(async move {
            let mut s = connect(target).await?;
            let mut i = c;
            while i < tokens.len() {
                let st = send(&mut s, Method::PUT, "/bpd/io/citizen", &tokens[i]).await?;
                if st != 200 {
                    bail!("citizen enrollment answered {st}");
                }
                i += setup_conns;
            }
            let mut enrolled = Vec::new();
            if scenario == Scenario::Get {
                let mut k = c as u64;
                while k < instruments as u64 {
                    let tok = &tokens[(k % tokens.len() as u64) as usize];
                    let h = hpan(seed, usize::MAX, k);
                    let st = send(&mut s, Method::PUT, &format!("/bpd/io/payment-instruments/{h}"), tok).await?;
                    if st != 200 {
                        bail!("instrument enrollment answered {st}");
                    }
                    enrolled.push((format!("/bpd/io/payment-instruments/{h}"), tok.clone()));
                    k += setup_conns as u64;
                }
            }
            Ok::<_, anyhow::Error>(enrolled)
        }));
    }
    let mut pool: Vec<(String, String)> = Vec::new();
    for j in joins {
        pool.extend(j.await.context("setup task")??);
    }
    let pool = std::sync::Arc::new(pool);
    let tokens = std::sync::Arc::new(tokens);

    eprintln!(
        "running {:?} with {} connections: {} s warm-up, {} s measured",
        args.scenario, args.connections, args.warmup, args.duration
    );
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let deadline = measure_from + Duration::from_secs(args.duration);
    let mut joins = Vec::new();
    for c in 0..args.connections {
        let (tokens, pool, target, scenario) = (tokens.clone(), pool.clone(), args.target, args.scenario);
        joins.push(tokio::spawn(async move {
            let mut out = Outcome {
                hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
                statuses: BTreeMap::new(),
                errors: 0,
            };
            let mut sender = None;
            let mut n: u64 = 0;
            while Instant::now() < deadline {
                if sender.is_none() {
                    match connect(target).await {
                        Ok(s) => sender = Some(s),
                        Err(_) => {
                            out.errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let s = sender.as_mut().expect("connected");
                let (method, path, token) = match scenario {
                    Scenario::Put => {
                        let tok = &tokens[(c + n as usize * 7) % tokens.len()];
                        (Method::PUT, format!("/bpd/io/payment-instruments/{}", hpan(seed, c, n)), tok.as_str())
                    }
                    Scenario::Get => {
                        let (p, t) = &pool[(c * 7919 + n as usize * 104_729) % pool.len()];
                        (Method::GET, p.clone(), t.as_str())
                    }
                };
                n += 1;
                let t0 = Instant::now();
                let res = send(s, method, &path, token).await;
                let measured = t0 >= measure_from && Instant::now() <= deadline;
                match res {
                    Ok(st) => {
                        if measured {
                            let us = t0.elapsed().as_micros().max(1) as u64;
                            let _ = out.hist.record(us.min(60_000_000));
                            *out.statuses.entry(st).or_default() += 1;
                        }
                    }
                    Err(_) => {
                        if measured {
                            out.errors += 1;
                        }
                        sender = None;
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
    let total = hist.len();
    let rps = total as f64 / args.duration as f64;
    let non_2xx: u64 = statuses.iter().filter(|(k, _)| !(200..300).contains(*k)).map(|(_, v)| v).sum();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let report = serde_json::json!({
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "connections": args.connections,
        "duration_s": args.duration,
        "requests": total,
        "throughput_rps": (rps * 10.0).round() / 10.0,
        "latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": hist.max() as f64 / 1000.0 },
        "statuses": statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "non_2xx": non_2xx,
        "transport_errors": errors,
    });
    println!("{report}");
    Ok(())
}
