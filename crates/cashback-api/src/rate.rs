//! Per-identity rate limits (admission control, issue 5): one token bucket per citizen (fiscal
//! code), per issuer, acquirer, Payment Manager and operator credential. A client over its rate
//! gets **429 Too Many Requests** with `Retry-After` (whole seconds, at least 1) at once — the
//! IO app's backoff understands it — instead of taking capacity from everyone else. The global
//! concurrency limit (load shedding, 503) stays in front of all of this.
//!
//! Buckets live in a concurrent map keyed by identity; [`RateLimits::prune`] (called every few
//! seconds by the server) drops the buckets that are full again, so memory follows the number
//! of *recently active* clients, not of all clients ever seen.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// One identity class's limit: `per_second` sustained, bursts of `burst`. `per_second = 0`
/// turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    pub const OFF: Rate = Rate { per_second: 0, burst: 0 };
}

/// The limits of every identity class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateConfig {
    /// Per citizen (IO app, by fiscal code). The app's wallet render sends one GET per card at
    /// once; a person does not need more than a few requests a second.
    pub citizen: Rate,
    /// Per issuer API key (a bank's backend enrolling on behalf of its customers).
    pub issuer: Rate,
    /// Per acquirer API key (files, SAS tokens, reports).
    pub acquirer: Rate,
    /// The Payment Manager's key.
    pub payment_manager: Rate,
    /// Per operator key.
    pub operator: Rate,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            citizen: Rate { per_second: 50, burst: 100 },
            issuer: Rate { per_second: 5_000, burst: 10_000 },
            acquirer: Rate { per_second: 20, burst: 40 },
            payment_manager: Rate { per_second: 2_000, burst: 4_000 },
            operator: Rate { per_second: 50, burst: 100 },
        }
    }
}

/// Who is being limited (also the metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Citizen,
    Issuer,
    Acquirer,
    PaymentManager,
    Operator,
}

impl Who {
    fn label(self) -> &'static str {
        match self {
            Who::Citizen => "citizen",
            Who::Issuer => "issuer",
            Who::Acquirer => "acquirer",
            Who::PaymentManager => "payment-manager",
            Who::Operator => "operator",
        }
    }
}

struct Limiter {
    inner: DefaultKeyedRateLimiter<String>,
}

impl Limiter {
    fn new(rate: Rate) -> Option<Limiter> {
        let per_second = NonZeroU32::new(rate.per_second)?;
        let burst = NonZeroU32::new(rate.burst.max(rate.per_second)).unwrap_or(per_second);
        Some(Limiter { inner: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)) })
    }
}

/// The per-identity limiters of one node.
pub struct RateLimits {
    config: RateConfig,
    citizen: Option<Limiter>,
    issuer: Option<Limiter>,
    acquirer: Option<Limiter>,
    payment_manager: Option<Limiter>,
    operator: Option<Limiter>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::new(RateConfig::default())
    }
}

impl RateLimits {
    pub fn new(config: RateConfig) -> RateLimits {
        for (who, r) in [
            (Who::Citizen, config.citizen),
            (Who::Issuer, config.issuer),
            (Who::Acquirer, config.acquirer),
            (Who::PaymentManager, config.payment_manager),
            (Who::Operator, config.operator),
        ] {
            metrics::gauge!("cashback_rate_limit_per_second", "who" => who.label()).set(f64::from(r.per_second));
            metrics::gauge!("cashback_rate_limit_burst", "who" => who.label()).set(f64::from(r.burst));
        }
        RateLimits {
            config,
            citizen: Limiter::new(config.citizen),
            issuer: Limiter::new(config.issuer),
            acquirer: Limiter::new(config.acquirer),
            payment_manager: Limiter::new(config.payment_manager),
            operator: Limiter::new(config.operator),
        }
    }

    /// Limits off for everyone (tests of other behaviour, benchmarks of raw capacity).
    pub fn off() -> RateLimits {
        let off = Rate::OFF;
        RateLimits::new(RateConfig { citizen: off, issuer: off, acquirer: off, payment_manager: off, operator: off })
    }

    pub fn config(&self) -> RateConfig {
        self.config
    }

    fn limiter(&self, who: Who) -> Option<&Limiter> {
        match who {
            Who::Citizen => self.citizen.as_ref(),
            Who::Issuer => self.issuer.as_ref(),
            Who::Acquirer => self.acquirer.as_ref(),
            Who::PaymentManager => self.payment_manager.as_ref(),
            Who::Operator => self.operator.as_ref(),
        }
    }

    /// Takes one request from `key`'s bucket, or answers 429 with the seconds until the next
    /// request would be admitted.
    pub fn check(&self, who: Who, key: &str) -> Result<(), ApiError> {
        let Some(l) = self.limiter(who) else { return Ok(()) };
        match l.inner.check_key(&key.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                metrics::counter!("cashback_rate_limited_total", "who" => who.label()).increment(1);
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(ApiError::too_many_requests(
                    format!("too many requests for this {}, retry shortly", who.label()),
                    retry_after_secs(wait),
                ))
            }
        }
    }

    /// Drops the buckets that are full again (their clients have been idle long enough) and
    /// returns how many are left.
    pub fn prune(&self) -> usize {
        let mut left = 0;
        for (who, l) in [
            (Who::Citizen, &self.citizen),
            (Who::Issuer, &self.issuer),
            (Who::Acquirer, &self.acquirer),
            (Who::PaymentManager, &self.payment_manager),
            (Who::Operator, &self.operator),
        ] {
            if let Some(l) = l {
                l.inner.retain_recent();
                l.inner.shrink_to_fit();
                let n = l.inner.len();
                metrics::gauge!("cashback_rate_limit_buckets", "who" => who.label()).set(n as f64);
                left += n;
            }
        }
        left
    }
}

/// `Retry-After` in whole seconds: rounded up, at least 1.
fn retry_after_secs(wait: Duration) -> u32 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(rate: Rate) -> RateLimits {
        RateLimits::new(RateConfig { citizen: rate, ..RateConfig::default() })
    }

    #[test]
    fn a_burst_is_admitted_then_429_with_retry_after() {
        let l = one(Rate { per_second: 1, burst: 3 });
        for _ in 0..3 {
            l.check(Who::Citizen, "RSSMRA85T10A562S").unwrap();
        }
        let e = l.check(Who::Citizen, "RSSMRA85T10A562S").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(1));
        // Another citizen has their own bucket.
        l.check(Who::Citizen, "VRDGPP80A01H501U").unwrap();
    }

    #[test]
    fn off_admits_everything_and_classes_are_separate() {
        let l = one(Rate::OFF);
        for _ in 0..10_000 {
            l.check(Who::Citizen, "X").unwrap();
        }
        let l = RateLimits::new(RateConfig { issuer: Rate { per_second: 1, burst: 1 }, ..RateConfig::default() });
        l.check(Who::Issuer, "k").unwrap();
        assert!(l.check(Who::Issuer, "k").is_err());
        l.check(Who::Acquirer, "k").unwrap();
    }

    #[test]
    fn idle_buckets_are_pruned() {
        let l = one(Rate { per_second: 1_000, burst: 1 });
        for i in 0..100 {
            l.check(Who::Citizen, &format!("C{i}")).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(l.prune(), 0, "every bucket refilled, none kept");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}
