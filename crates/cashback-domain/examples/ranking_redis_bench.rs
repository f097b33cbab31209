//! The Super Cashback ranking (`cashback_domain::ranking`) against a Redis sorted set holding the
//! same citizens (issue 4: "compare rank lookups with Redis sorted sets, ZREVRANK on the same
//! 9 M members"). Driven by `scripts/bench-ranking-redis.sh`; results in `docs/benchmarks.md`.
//!
//! ```text
//! CARGO_TARGET_DIR=... cargo run --release -p cashback-domain --example ranking_redis_bench -- \
//!     [CITIZENS] [--port 6379] [--key cashback:bench:ranking] [--single 100000] [--batch 1000]
//! ```
//!
//! * Population: the generator of `ranking_bench.rs`, copied verbatim (splitmix64 seeded with 42,
//!   same draws in the same order), so both examples rank the same citizens; the 1,000,000 probe
//!   citizens are also the same. As a cross-check this example finally applies `ranking_bench`'s
//!   1,000,000 updates and prints the same `summary … (Σ counts …)` line, which the script
//!   compares with `ranking_bench`'s output.
//! * Redis key (deleted first if left over, unlinked at the end, also on panic): a sorted set
//!   loaded with pipelined `ZADD`s of 1,000 members each.
//! * Score: `count · 2^44 + (2^44 − 1 − (last_us − START_US))`, or `count · 2^44` without a
//!   latest payment (count 0). The period offset of the instant (µs) is < 181 days < 2^44 µs
//!   (203.6 days) and the count < 2^9, so every score is an integer < 2^53, exact in a double:
//!   higher score = more payments, then earlier latest payment — our order's keys 1 and 2 with
//!   nothing lost. (A longer period or counts ≥ 512 would need a coarser instant, e.g. ms,
//!   creating ties that only the member then breaks.)
//! * Member: the citizen id complemented (`u32::MAX − id`) in 8 lower-case hex digits. Redis
//!   orders equal scores by member bytes, and `ZREVRANK` reverses that order, so equal scores
//!   come out in *descending* member order: complementing the id makes that ascending citizen id,
//!   our key 3. With plain ids as members (`"42"`), ties would come out in reverse lexicographic
//!   order ("9" before "10" before "100"), which differs from ours for every tied group.
//! * Measured: in-process `Ranking::rank` on the probe citizens (batch mean and individually
//!   timed p50/p99); `ZREVRANK` one request at a time over loopback TCP (p50/p99/mean round trip,
//!   with `PING` as the protocol/loopback floor) and pipelined in batches; Redis's own server-side
//!   time per call (`INFO commandstats`, difference before/after); memory (process RSS growth
//!   for our structure, `used_memory` growth for Redis).
//! * Verified: `ZCARD` = citizens; every `ZREVRANK` reply (single and pipelined) + 1 = our rank;
//!   the top 10 of `ZREVRANGE` = our top 10. Any difference fails the run.
//!
//! The client is a minimal RESP2 client over `std::net::TcpStream` (no Redis crate, no extra
//! dependency, no client-library overhead in the round trip); it only connects to 127.0.0.1.

use std::hint::black_box;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use cashback_domain::ranking::{CitizenId, Ranking};
use cashback_domain::scoring::Standing;

mod common;
use common::{Rng, SEMESTER_US, START_US, percentile, standing};

/// Probes of ranking_bench (drawn right after the population).
const LOOKUPS: usize = 1_000_000;

// ---- Score and member encoding -------------------------------------------------------------------

const INSTANT_BITS: u32 = 44;
const INSTANT_SPAN: u64 = 1 << INSTANT_BITS;

/// The sorted-set score (module docs); `None` when the standing does not fit the exact encoding.
fn score(s: Standing) -> Option<u64> {
    let tail = match s.last_us {
        Some(t) => {
            let offset = u64::try_from(t.checked_sub(START_US)?).ok()?;
            if offset >= INSTANT_SPAN - 1 {
                return None;
            }
            INSTANT_SPAN - 1 - offset // ≥ 1: a payment beats "none" at equal count
        }
        None => 0,
    };
    let s = u64::from(s.count).checked_mul(INSTANT_SPAN)? + tail;
    (s < 1 << 53).then_some(s)
}

fn write_member(out: &mut Vec<u8>, c: CitizenId) {
    write!(out, "$8\r\n{:08x}\r\n", !c).unwrap();
}

fn parse_member(m: &[u8]) -> CitizenId {
    !u32::from_str_radix(std::str::from_utf8(m).expect("hex member"), 16).expect("hex member")
}

// ---- Minimal RESP2 client ------------------------------------------------------------------------

#[derive(Debug)]
enum Reply {
    Int(i64),
    Nil,
    Status(String),
    Bulk(Vec<u8>),
    Array(Vec<Reply>),
}

struct Redis {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    out: Vec<u8>,
    line: Vec<u8>,
}

impl Redis {
    fn connect(port: u16) -> io::Result<Redis> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        s.set_write_timeout(Some(Duration::from_secs(120)))?;
        Ok(Redis {
            reader: BufReader::with_capacity(1 << 16, s.try_clone()?),
            writer: s,
            out: Vec::with_capacity(1 << 20),
            line: Vec::new(),
        })
    }

    fn push_header(&mut self, args: usize) {
        write!(self.out, "*{args}\r\n").unwrap();
    }

    fn push_arg(&mut self, a: &[u8]) {
        write!(self.out, "${}\r\n", a.len()).unwrap();
        self.out.extend_from_slice(a);
        self.out.extend_from_slice(b"\r\n");
    }

    fn push(&mut self, args: &[&[u8]]) {
        self.push_header(args.len());
        for a in args {
            self.push_arg(a);
        }
    }

    fn push_zrevrank(&mut self, key: &[u8], c: CitizenId) {
        self.push_header(3);
        self.push_arg(b"ZREVRANK");
        self.push_arg(key);
        write_member(&mut self.out, c);
    }

    fn send(&mut self) -> io::Result<()> {
        self.writer.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    fn read(&mut self) -> io::Result<Reply> {
        self.line.clear();
        self.reader.read_until(b'\n', &mut self.line)?;
        if self.line.len() < 3 || !self.line.ends_with(b"\r\n") {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated reply"));
        }
        let body = std::str::from_utf8(&self.line[1..self.line.len() - 2]).map_err(io::Error::other)?;
        let num = || body.parse::<i64>().map_err(io::Error::other);
        Ok(match self.line[0] {
            b':' => Reply::Int(num()?),
            b'+' => Reply::Status(body.to_owned()),
            b'-' => return Err(io::Error::other(format!("redis error: {body}"))),
            b'$' => match num()? {
                n if n < 0 => Reply::Nil,
                n => {
                    let mut b = vec![0; n as usize + 2];
                    self.reader.read_exact(&mut b)?;
                    b.truncate(n as usize);
                    Reply::Bulk(b)
                }
            },
            b'*' => match num()? {
                n if n < 0 => Reply::Nil,
                n => (0..n).map(|_| self.read()).collect::<io::Result<Vec<_>>>().map(Reply::Array)?,
            },
            _ => return Err(io::Error::other(format!("unexpected reply {:?}", String::from_utf8_lossy(&self.line)))),
        })
    }

    fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.push(args);
        self.send()?;
        self.read()
    }

    fn int(&mut self, args: &[&[u8]]) -> io::Result<i64> {
        match self.call(args)? {
            Reply::Int(n) => Ok(n),
            r => Err(io::Error::other(format!("expected an integer, got {r:?}"))),
        }
    }

    /// `INFO section` as `field:value` pairs.
    fn info(&mut self, section: &str) -> io::Result<Vec<(String, String)>> {
        match self.call(&[b"INFO", section.as_bytes()])? {
            Reply::Bulk(b) => Ok(String::from_utf8_lossy(&b)
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()),
            r => Err(io::Error::other(format!("expected INFO text, got {r:?}"))),
        }
    }

    fn info_field(&mut self, section: &str, field: &str) -> io::Result<String> {
        self.info(section)?
            .into_iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v)
            .ok_or_else(|| io::Error::other(format!("INFO {section} has no {field}")))
    }

    /// (calls, µs) of one command in `INFO commandstats` (0, 0 before its first call).
    fn command_stats(&mut self, command: &str) -> io::Result<(u64, u64)> {
        let field = format!("cmdstat_{command}");
        let Some((_, v)) = self.info("commandstats")?.into_iter().find(|(k, _)| *k == field) else {
            return Ok((0, 0));
        };
        let get = |name: &str| -> u64 {
            v.split(',').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok()).unwrap_or(0)
        };
        Ok((get("calls"), get("usec")))
    }
}

/// Unlinks the benchmark key when dropped (normal end or panic).
struct KeyGuard {
    port: u16,
    key: String,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        match Redis::connect(self.port).and_then(|mut r| r.int(&[b"UNLINK", self.key.as_bytes()])) {
            Ok(n) => println!("cleanup: UNLINK {} -> {n}", self.key),
            Err(e) => eprintln!("cleanup: could not unlink {}: {e}", self.key),
        }
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Args {
    citizens: u32,
    port: u16,
    key: String,
    single: usize,
    batch: usize,
}

fn args() -> Args {
    let mut a =
        Args { citizens: 9_000_000, port: 6379, key: "cashback:bench:ranking".into(), single: 100_000, batch: 1_000 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--port" => a.port = value("--port").parse().expect("--port is a number"),
            "--key" => a.key = value("--key"),
            "--single" => a.single = value("--single").parse().expect("--single is a number"),
            "--batch" => a.batch = value("--batch").parse().expect("--batch is a number"),
            "-h" | "--help" => {
                println!(
                    "ranking_redis_bench [CITIZENS=9000000] [--port 6379] [--key cashback:bench:ranking] \
                     [--single 100000] [--batch 1000]  (Redis on 127.0.0.1 only)"
                );
                std::process::exit(0);
            }
            n => a.citizens = n.parse().expect("CITIZENS is a number"),
        }
    }
    assert!(a.key.starts_with("cashback:bench:"), "the key must be a dedicated cashback:bench:* key");
    assert!(a.single >= 1 && a.single <= LOOKUPS && a.batch >= 1, "--single in 1..=1000000, --batch ≥ 1");
    a
}

fn main() -> io::Result<()> {
    let a = args();
    let key = a.key.as_bytes();
    let n = a.citizens;

    // ---- Population and our ranking (same draws as ranking_bench). ----
    let rss0 = rss_bytes();
    let mut rng = Rng(42);
    let entries: Vec<(CitizenId, Standing)> = (0..n).map(|c| (c, standing(&mut rng))).collect();
    let t = Instant::now();
    let mut ranking = Ranking::build(entries.iter().copied());
    let build = t.elapsed();
    drop(entries);
    let rss_ranking = rss_bytes().saturating_sub(rss0);
    let probes: Vec<CitizenId> = (0..LOOKUPS).map(|_| rng.below(u64::from(n)) as u32).collect();
    // The structure's own arrays: the citizen table (16 B per id) and the sorted keys (16 B each,
    // chunks allocated exactly at build), plus the chunk index (16 B per 1,024 keys).
    let computed = 16 * u64::from(n) + 16 * ranking.len() as u64 + 16 * (ranking.len() as u64).div_ceil(1024);
    println!(
        "ranking: {n} citizens, build {:.3} s, RSS growth {:.0} MiB (arrays: {:.0} MiB = {:.1} B/citizen)",
        build.as_secs_f64(),
        mib(rss_ranking),
        mib(computed),
        computed as f64 / f64::from(n)
    );

    let scores: Vec<u64> = (0..n)
        .map(|c| score(ranking.standing(c).expect("ranked")).expect("every standing fits the exact score encoding"))
        .collect();
    let max_score = *scores.iter().max().unwrap();
    let tied = {
        let mut s = scores.clone();
        s.sort_unstable();
        let mut tied = 0u64;
        let mut i = 0;
        while i < s.len() {
            let j = i + s[i..].partition_point(|&x| x == s[i]);
            if j - i > 1 {
                tied += (j - i) as u64;
            }
            i = j;
        }
        tied
    };
    println!(
        "scores: max {max_score} = {:.4} × 2^53 (exact); {tied} citizens share their score with another \
         (tie broken by citizen id / member)",
        max_score as f64 / (1u64 << 53) as f64
    );

    // ---- In process, on the probes. ----
    let single = &probes[..a.single];
    let expected = |c: CitizenId| ranking.rank(c).expect("ranked");
    let t = Instant::now();
    let mut sum = 0u64;
    for &c in single {
        sum += u64::from(ranking.rank(black_box(c)).unwrap());
    }
    let inproc_single_mean = t.elapsed() / single.len() as u32;
    let mut each: Vec<Duration> = Vec::with_capacity(single.len());
    for &c in single {
        let t = Instant::now();
        black_box(ranking.rank(black_box(c)));
        each.push(t.elapsed());
    }
    each.sort_unstable();
    let (inproc_p50, inproc_p99) = (percentile(&each, 0.50), percentile(&each, 0.99));
    let t = Instant::now();
    for &c in &probes {
        sum += u64::from(ranking.rank(black_box(c)).unwrap());
    }
    let inproc_all_mean = t.elapsed() / probes.len() as u32;
    black_box(sum);
    println!(
        "in process: {} lookups mean {:.3} µs, timed one by one p50 {:.3} µs p99 {:.3} µs; {} lookups mean {:.3} µs",
        single.len(),
        us(inproc_single_mean),
        us(inproc_p50),
        us(inproc_p99),
        probes.len(),
        us(inproc_all_mean)
    );

    // ---- Redis: load. ----
    let mut r = Redis::connect(a.port)?;
    let version = r.info_field("server", "redis_version")?;
    if r.int(&[b"DEL", key])? > 0 {
        println!("redis: deleted a leftover {}", a.key);
    }
    let _guard = KeyGuard { port: a.port, key: a.key.clone() };
    let mem0: u64 = r.info_field("memory", "used_memory")?.parse().map_err(io::Error::other)?;
    const ZADD_MEMBERS: usize = 1_000;
    const ZADD_DEPTH: usize = 20; // ZADD commands in flight per write
    let t = Instant::now();
    let ids: Vec<CitizenId> = (0..n).collect();
    for group in ids.chunks(ZADD_MEMBERS * ZADD_DEPTH) {
        let cmds = group.chunks(ZADD_MEMBERS).len();
        for cmd in group.chunks(ZADD_MEMBERS) {
            r.push_header(2 + 2 * cmd.len());
            r.push_arg(b"ZADD");
            r.push_arg(key);
            for &c in cmd {
                let s = scores[c as usize].to_string();
                r.push_arg(s.as_bytes());
                write_member(&mut r.out, c);
            }
        }
        r.send()?;
        for _ in 0..cmds {
            r.read()?;
        }
    }
    let load = t.elapsed();
    drop(ids);
    let card = r.int(&[b"ZCARD", key])?;
    assert_eq!(card, i64::from(n), "ZCARD");
    let mem1: u64 = r.info_field("memory", "used_memory")?.parse().map_err(io::Error::other)?;
    let redis_mem = mem1.saturating_sub(mem0);
    println!(
        "redis {version}: ZADD of {n} members (pipelined, {ZADD_MEMBERS} per command): {:.1} s ({:.0} members/s); \
         used_memory +{:.0} MiB ({:.1} B/member)",
        load.as_secs_f64(),
        f64::from(n) / load.as_secs_f64(),
        mib(redis_mem),
        redis_mem as f64 / f64::from(n)
    );

    // ---- Verification of the order at the top. ----
    let Reply::Array(top) = r.call(&[b"ZREVRANGE", key, b"0", b"9"])? else { panic!("ZREVRANGE reply") };
    let redis_top: Vec<CitizenId> =
        top.iter().map(|m| if let Reply::Bulk(b) = m { parse_member(b) } else { panic!("member") }).collect();
    let our_top: Vec<CitizenId> = ranking.top(10).map(|x| x.citizen).collect();
    assert_eq!(redis_top, our_top, "top 10: Redis vs ours");

    let mut mismatches = 0u64;
    let mut check = |c: CitizenId, reply: Reply| {
        let ok = matches!(reply, Reply::Int(i) if i + 1 == i64::from(expected(c)));
        if !ok {
            if mismatches < 5 {
                eprintln!("MISMATCH citizen {c}: redis {reply:?}, ours {}", expected(c));
            }
            mismatches += 1;
        }
    };

    // ---- Redis: loopback floor (PING), then ZREVRANK one at a time. ----
    let mut ping: Vec<Duration> = Vec::with_capacity(single.len());
    for _ in 0..single.len() {
        r.push(&[b"PING"]);
        let t = Instant::now();
        r.send()?;
        let reply = r.read()?;
        ping.push(t.elapsed());
        assert!(matches!(reply, Reply::Status(ref s) if s == "PONG"));
    }
    ping.sort_unstable();
    let stats0 = r.command_stats("zrevrank")?;
    let mut rtt: Vec<Duration> = Vec::with_capacity(single.len());
    let t_all = Instant::now();
    for &c in single {
        r.push_zrevrank(key, c);
        let t = Instant::now();
        r.send()?;
        let reply = r.read()?;
        rtt.push(t.elapsed());
        check(c, reply);
    }
    let single_wall = t_all.elapsed();
    let stats1 = r.command_stats("zrevrank")?;
    let rtt_mean = rtt.iter().sum::<Duration>() / rtt.len() as u32;
    rtt.sort_unstable();
    let (rtt_p50, rtt_p99) = (percentile(&rtt, 0.50), percentile(&rtt, 0.99));

    // ---- Redis: ZREVRANK pipelined in batches. ----
    let t = Instant::now();
    for batch in probes.chunks(a.batch) {
        for &c in batch {
            r.push_zrevrank(key, c);
        }
        r.send()?;
        for &c in batch {
            let reply = r.read()?;
            check(c, reply);
        }
    }
    let piped = t.elapsed();
    let stats2 = r.command_stats("zrevrank")?;
    let server_us = |a: (u64, u64), b: (u64, u64)| (b.1 - a.1) as f64 / (b.0 - a.0).max(1) as f64;
    let server_single = server_us(stats0, stats1);
    let server_piped = server_us(stats1, stats2);
    drop(r);
    assert_eq!(mismatches, 0, "Redis ranks differ from ours");
    let piped_per = piped / probes.len() as u32;
    println!(
        "redis PING one at a time ({}): p50 {:.1} µs p99 {:.1} µs",
        ping.len(),
        us(percentile(&ping, 0.50)),
        us(percentile(&ping, 0.99))
    );
    println!(
        "redis ZREVRANK one at a time ({}): round trip p50 {:.1} µs p99 {:.1} µs mean {:.1} µs ({:.0} req/s); \
         server-side {:.2} µs/call",
        single.len(),
        us(rtt_p50),
        us(rtt_p99),
        us(rtt_mean),
        single.len() as f64 / single_wall.as_secs_f64(),
        server_single
    );
    println!(
        "redis ZREVRANK pipelined ({} in batches of {}): {:.3} s, {:.0} ops/s, {:.2} µs/op; server-side {:.2} µs/call",
        probes.len(),
        a.batch,
        piped.as_secs_f64(),
        probes.len() as f64 / piped.as_secs_f64(),
        us(piped_per),
        server_piped
    );
    println!(
        "verified: ZCARD = {n}, top 10 identical, {} ZREVRANK replies + 1 = our rank (0 mismatches)",
        single.len() + probes.len()
    );

    // ---- Summary. ----
    let ratio = |x: f64, y: f64| x / y;
    println!("== summary (same {n} citizens, same probe citizens) ==");
    println!(
        "  single lookup p50:  redis round trip {:.1} µs vs in process {:.3} µs  -> {:.0}x",
        us(rtt_p50),
        us(inproc_p50),
        ratio(us(rtt_p50), us(inproc_p50))
    );
    println!(
        "  single lookup p99:  redis round trip {:.1} µs vs in process {:.3} µs  -> {:.0}x",
        us(rtt_p99),
        us(inproc_p99),
        ratio(us(rtt_p99), us(inproc_p99))
    );
    println!(
        "  single lookup mean: redis round trip {:.1} µs vs in process {:.3} µs  -> {:.0}x",
        us(rtt_mean),
        us(inproc_single_mean),
        ratio(us(rtt_mean), us(inproc_single_mean))
    );
    println!(
        "  pipelined per op:   redis {:.2} µs vs in process {:.3} µs  -> {:.1}x",
        us(piped_per),
        us(inproc_all_mean),
        ratio(us(piped_per), us(inproc_all_mean))
    );
    println!(
        "  server-side only:   redis {:.2} µs/call (one at a time), {:.2} µs/call (pipelined) vs in process {:.3} µs \
         -> {:.1}x / {:.1}x",
        server_single,
        server_piped,
        us(inproc_all_mean),
        ratio(server_single, us(inproc_all_mean)),
        ratio(server_piped, us(inproc_all_mean))
    );
    println!(
        "  memory:             redis +{:.0} MiB vs ours {:.0} MiB RSS ({:.0} MiB arrays)  -> {:.1}x",
        mib(redis_mem),
        mib(rss_ranking),
        mib(computed),
        ratio(redis_mem as f64, rss_ranking.max(computed) as f64)
    );
    println!(
        "  target (issue 4):   rank lookup ≤ 5 µs in process: {}",
        if us(inproc_p99) <= 5.0 { "met" } else { "NOT met" }
    );

    // ---- Cross-check with ranking_bench: its updates, its summary line. ----
    const UPDATES: usize = 1_000_000;
    for i in 0..UPDATES {
        let c = probes[i % probes.len()];
        let s = ranking.standing(c).unwrap();
        let next = Standing { count: s.count + 1, last_us: Some(START_US + SEMESTER_US as i64 + i as i64) };
        ranking.update(c, next);
    }
    let summary = ranking.summary(100_000);
    let top: u64 = ranking.top(100_000).map(|r| u64::from(r.standing.count)).sum();
    println!("cross-check: summary {:?} and top 100,000 (Σ counts {top})", summary);
    Ok(())
}
