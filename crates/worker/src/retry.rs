//! When to try a failed attempt again.

use rand::Rng;
use std::time::Duration;

/// Exponential backoff with full jitter: attempt 1 waits up to `base`,
/// attempt 2 up to `2 * base`, ... never more than `max`. Jitter spreads
/// the retries of many jobs that failed together (a broker restart).
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exponent).min(max);
    let low = ceiling / 2;
    let spread = ceiling.saturating_sub(low).as_millis() as u64;
    let jitter = if spread == 0 {
        0
    } else {
        rand::thread_rng().gen_range(0..=spread)
    };
    low + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_bounds() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        for _ in 0..100 {
            let first = backoff(1, base, max);
            assert!(
                first >= Duration::from_secs(1) && first <= base,
                "{first:?}"
            );
            let third = backoff(3, base, max);
            assert!(third >= Duration::from_secs(4) && third <= Duration::from_secs(8));
            assert!(backoff(20, base, max) <= max);
        }
    }
}
