//! Reconnect delays: exponential, capped, with jitter, so many nodes that lost the same
//! Redis do not come back in step.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    /// xorshift64 state: jitter needs spread, not secrecy.
    rng: u64,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff { base, cap, attempt: 0, rng: seed | 1 }
    }

    /// The delay before the next attempt: `base * 2^attempt`, capped, then a random point in
    /// its upper half ("equal jitter"): never zero, never above the cap.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(20)).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = exp / 2;
        let nanos = half.as_nanos() as u64;
        let jitter = if nanos == 0 { 0 } else { self.rng % (nanos + 1) };
        half + Duration::from_nanos(jitter)
    }

    /// A connection succeeded: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(5));
        let mut b = Backoff::new(base, cap, 42);
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let exp = (base * (1 << i)).min(cap);
            assert!(*d >= exp / 2 && *d <= exp, "attempt {i}: {d:?} not in [{:?}, {exp:?}]", exp / 2);
        }
        assert!(delays[9] >= cap / 2);
        let mut other = Backoff::new(base, cap, 7);
        let theirs: Vec<Duration> = (0..10).map(|_| other.next_delay()).collect();
        assert_ne!(delays, theirs, "two nodes do not retry in step");
        b.reset();
        assert!(b.next_delay() <= base);
    }
}
