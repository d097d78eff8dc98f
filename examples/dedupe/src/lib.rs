//! `dedupe`: forwards a record unless a record with the same key was forwarded less than
//! `window_ms` earlier (by event time); records without a key always pass. Expired keys are
//! removed by stream-time timers, so the store holds only the keys of the current window.
//!
//! Config: `window_ms` (default 60000); `output` (optional, default: the first output).
//!
//! Stores: `seen` (key → event time it was forwarded, decimal) and `expiry` (8-byte
//! big-endian expiry time + key → nothing: an index that timers scan in time order).

use weir_guest::{Batch, Config, Context, Error, Processor, Result, Store, Timer, TimerKind, bail};

struct Dedupe {
    window: i64,
    /// Timers are rounded up to a multiple of this, so one timer serves many keys.
    granularity: i64,
    output: String,
    seen: Store,
    expiry: Store,
}

/// Expiry-index key: big-endian time with the sign bit flipped (so byte order is time order),
/// then the record key.
fn expiry_key(time: i64, key: &[u8]) -> Vec<u8> {
    let mut k = ((time as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    k.extend_from_slice(key);
    k
}

impl Dedupe {
    fn seen_at(&self, key: &[u8]) -> Result<Option<i64>> {
        match self.seen.get_string(key)? {
            None => Ok(None),
            Some(s) => Ok(Some(s.parse().map_err(|e| Error::new(format!("{e}")))?)),
        }
    }
}

impl Processor for Dedupe {
    fn init(_ctx: &mut Context, config: &Config) -> Result<Self> {
        let window: i64 = config.parse("window_ms")?.unwrap_or(60_000);
        if window <= 0 {
            bail!("config `window_ms` must be positive");
        }
        Ok(Dedupe {
            window,
            granularity: (window / 10).max(1),
            output: config.get("output").unwrap_or("").to_string(),
            seen: Store::open("seen")?,
            expiry: Store::open("expiry")?,
        })
    }

    fn process(&mut self, ctx: &mut Context, batch: &Batch<'_>) -> Result<()> {
        for record in batch {
            let Some(key) = record.key() else {
                ctx.forward(&self.output, &record)?;
                continue;
            };
            let ts = record.timestamp();
            if let Some(at) = self.seen_at(key)?
                && ts.saturating_sub(at) < self.window
            {
                continue;
            }
            self.seen.put(key, ts.to_string())?;
            let expires = ts.saturating_add(self.window);
            self.expiry.put(expiry_key(expires, key), [])?;
            let due = expires
                .div_euclid(self.granularity)
                .saturating_add(1)
                .saturating_mul(self.granularity);
            ctx.register_timer(TimerKind::StreamTime, due)?;
            ctx.forward(&self.output, &record)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, _ctx: &mut Context, timer: Timer) -> Result<()> {
        // Every index entry with expiry <= timer.time.
        let end = expiry_key(timer.time.saturating_add(1), &[]);
        let due: Vec<Vec<u8>> = self
            .expiry
            .scan(None, Some(&end))?
            .map(|e| e.map(|(k, _)| k))
            .collect::<Result<_>>()?;
        for index_key in due {
            let key = &index_key[8.min(index_key.len())..];
            // The key may have been seen again since (a later entry then exists).
            if let Some(at) = self.seen_at(key)?
                && at.saturating_add(self.window) <= timer.time
            {
                self.seen.delete(key)?;
            }
            self.expiry.delete(&index_key)?;
        }
        Ok(())
    }
}

weir_guest::export_processor!(Dedupe);
