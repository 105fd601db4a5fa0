//! The bridge's rate for the whole deployment: one token bucket per channel in the database,
//! which every instance's outbox claim draws from inside its claim transaction, so two
//! instances together send no faster than `rate_per_sec` (each also spaces its own sends with
//! the in-process [`super::Pacer`]). The arithmetic is here, once; the engines read and write
//! the bucket's row.

/// A channel's limit: `rate` sends a second, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

impl Rate {
    /// The bucket holds a fifth of a second of sends (at least one): a claim takes no more,
    /// and the deployment's rate over any second stays within 20 % of the set one.
    pub fn of(per_sec: f64) -> Rate {
        Rate {
            per_sec,
            burst: (per_sec * 0.2).max(1.0),
        }
    }

    /// The tokens in a bucket last left with `tokens` at `at_ms`, at `now_ms`; a bucket never
    /// seen is full.
    pub fn available(&self, last: Option<(f64, i64)>, now_ms: i64) -> f64 {
        match last {
            None => self.burst,
            Some((tokens, at)) => {
                let refill = (now_ms - at).max(0) as f64 * self.per_sec / 1_000.0;
                (tokens + refill).min(self.burst)
            }
        }
    }
}

impl Rate {
    /// How many sends a claim that wants `want` may take with `tokens` in the bucket; 0: wait.
    /// A claim waits until it can take a batch of 8 (or the burst, or `want`, if smaller):
    /// claimed one token at a time, each lower lane's share of at least one send a claim
    /// would give acks a third of the rate instead of most of it.
    pub fn grant(&self, tokens: f64, want: i64) -> i64 {
        let min_batch = want.min(8).min(self.burst.floor() as i64).max(1);
        let limit = want.min(tokens.floor() as i64);
        if limit < min_batch { 0 } else { limit }
    }
}

#[cfg(test)]
mod tests {
    use super::Rate;

    #[test]
    fn a_bucket_refills_at_the_rate_up_to_its_burst() {
        let r = Rate::of(100.0);
        assert_eq!(r.burst, 20.0);
        assert_eq!(r.available(None, 0), 20.0);
        assert_eq!(r.available(Some((0.0, 1_000)), 1_050), 5.0);
        assert_eq!(r.available(Some((3.0, 1_000)), 9_000), 20.0);
        // A clock that went back refills nothing.
        assert_eq!(r.available(Some((3.0, 1_000)), 500), 3.0);
        assert_eq!(Rate::of(2.0).burst, 1.0);
    }

    #[test]
    fn a_claim_waits_for_a_batch_so_acks_keep_their_share() {
        let r = Rate::of(50.0); // burst 10
        assert_eq!(r.grant(1.0, 64), 0);
        assert_eq!(r.grant(7.9, 64), 0);
        assert_eq!(r.grant(8.0, 64), 8);
        assert_eq!(r.grant(10.0, 64), 10);
        assert_eq!(r.grant(10.0, 4), 4);
        let slow = Rate::of(5.0); // burst 1
        assert_eq!(slow.grant(1.0, 64), 1);
        assert_eq!(slow.grant(0.5, 64), 0);
    }
}
