//! The database's clock, as every worker sees it.
//!
//! Leases are compared across machines: a worker whose clock runs a minute
//! behind would otherwise think every lease a minute younger, and one that
//! runs ahead would take over jobs whose holders are alive. Every lease
//! time (claims, renewals, expiry, retry times, worker presence) is read
//! from the database's clock instead. Asking the database on every write
//! would add a round trip to each; instead the offset between this
//! process's clock and the database's is measured (the midpoint of one
//! round trip, as NTP does) and measured again every [`RESYNC`]. Every
//! time a job row holds is taken from this clock, so that comparisons
//! never mix it with a local clock.

use chrono::{DateTime, Duration as TimeDelta, TimeZone, Utc};
use sqlx::Row;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Backend, Store, StoreError};

/// How long a measured offset is trusted: clocks drift by microseconds a
/// minute, far below any lease.
const RESYNC: Duration = Duration::from_secs(30);

/// The offset to the database's clock, shared by a store's clones.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    /// Database time minus local time, in microseconds.
    offset_us: AtomicI64,
    synced_at: Mutex<Option<Instant>>,
    /// A pretended error of this process's clock (fault tests only).
    skew_us: AtomicI64,
}

impl Clock {
    fn local(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::microseconds(self.skew_us.load(Ordering::Relaxed))
    }

    fn offset(&self) -> TimeDelta {
        TimeDelta::microseconds(self.offset_us.load(Ordering::Relaxed))
    }

    /// The database's time by the last measured offset.
    fn database_now(&self) -> DateTime<Utc> {
        self.local() + self.offset()
    }

    fn set_offset(&self, offset: TimeDelta) {
        self.offset_us
            .store(offset.num_microseconds().unwrap_or(0), Ordering::Relaxed);
        if let Ok(mut at) = self.synced_at.lock() {
            *at = Some(Instant::now());
        }
    }

    fn due(&self) -> bool {
        self.synced_at
            .lock()
            .map(|at| at.is_none_or(|t| t.elapsed() >= RESYNC))
            .unwrap_or(true)
    }
}

impl Store {
    /// The database's clock now: the time every lease is measured in.
    pub async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        if self.clock.due() {
            self.sync_clock().await?;
        }
        Ok(self.clock.database_now())
    }

    /// The last known database time, without a round trip (for values that
    /// only need to be close, such as the audit trail's timestamps).
    pub(crate) fn now_cached(&self) -> DateTime<Utc> {
        self.clock.database_now()
    }

    /// Measures the offset between this process's clock and the database's.
    pub async fn sync_clock(&self) -> Result<(), StoreError> {
        // SQLite's clock is this machine's: the offset is zero, and a
        // measurement would only add the noise of a round trip (unless a
        // test pretends this process's clock is wrong).
        if self.backend == Backend::Sqlite && self.clock.skew_us.load(Ordering::Relaxed) == 0 {
            self.clock.set_offset(TimeDelta::zero());
            return Ok(());
        }
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT) AS us"
            }
            Backend::Sqlite => {
                "SELECT CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER) AS us"
            }
        };
        let before = self.clock.local();
        let started = Instant::now();
        let row = sqlx::query(sql).fetch_one(&self.pool).await?;
        let round_trip = TimeDelta::from_std(started.elapsed()).unwrap_or_default();
        let us: i64 = row.try_get("us")?;
        let Some(database) = Utc.timestamp_micros(us).single() else {
            return Err(StoreError::Corrupt {
                table: "clock",
                message: format!("the database's clock reads {us} us since 1970"),
            });
        };
        self.clock.set_offset(database - (before + round_trip / 2));
        Ok(())
    }

    /// The measured offset of the database's clock from this process's.
    pub fn clock_offset(&self) -> TimeDelta {
        self.clock.offset()
    }

    /// A handle on the same database whose process pretends its own clock
    /// is off by `skew`: how fault tests stand in for a machine whose clock
    /// is wrong. Leases must not notice.
    pub fn with_clock_skew(mut self, skew: TimeDelta) -> Store {
        let clock = Clock::default();
        clock
            .skew_us
            .store(skew.num_microseconds().unwrap_or(0), Ordering::Relaxed);
        self.clock = Arc::new(clock);
        self
    }
}
