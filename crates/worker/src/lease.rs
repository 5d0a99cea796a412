//! The one rule every heartbeat loop follows: work whose lease the store
//! says is gone stops, and so does work whose lease could not be renewed
//! for a whole lease, since another worker may hold it by then.

use std::time::{Duration, Instant};

/// What a heartbeat's answer means for the work it keeps alive.
#[derive(Debug, PartialEq)]
pub(crate) enum Beat<T> {
    /// Renewed; the store's news about the work (a cancel, a stop).
    Held(T),
    /// The lease is another's or gone: stop without recording anything.
    Lost,
    /// This beat failed, but the lease may still run: try again.
    Missed,
}

/// When a lease was last renewed.
pub(crate) struct LeaseClock {
    lease: Duration,
    renewed: Instant,
}

impl LeaseClock {
    /// A lease of `lease`, renewed now (at the claim).
    pub(crate) fn new(lease: Duration) -> LeaseClock {
        LeaseClock {
            lease,
            renewed: Instant::now(),
        }
    }

    /// Whether a quarter of the lease has passed since the last renewal.
    pub(crate) fn due(&self) -> bool {
        self.renewed.elapsed() >= self.lease / 4
    }

    /// Reads a heartbeat's answer: `Some` when the store renewed the lease,
    /// `None` when it was not ours any more.
    pub(crate) fn beat<T, E>(&mut self, answer: Result<Option<T>, E>) -> Beat<T> {
        match answer {
            Ok(Some(news)) => {
                self.renewed = Instant::now();
                Beat::Held(news)
            }
            Ok(None) => Beat::Lost,
            Err(_) if self.renewed.elapsed() >= self.lease => Beat::Lost,
            Err(_) => Beat::Missed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_unrenewed_for_its_whole_length_is_lost() {
        let mut clock = LeaseClock::new(Duration::from_millis(40));
        assert_eq!(clock.beat::<_, ()>(Ok(Some(7))), Beat::Held(7));
        assert_eq!(clock.beat::<u8, _>(Err("down")), Beat::Missed);
        assert!(!clock.due());
        std::thread::sleep(Duration::from_millis(45));
        assert!(clock.due());
        assert_eq!(clock.beat::<u8, _>(Err("down")), Beat::Lost);
        assert_eq!(clock.beat::<u8, ()>(Ok(None)), Beat::Lost);
    }
}
