//! Hostile test guest: `process` panics on the first record (a trap).

use weir_guest::{Batch, Config, Context, Processor, Result};

struct Panics;

impl Processor for Panics {
    fn init(_ctx: &mut Context, _config: &Config) -> Result<Self> {
        Ok(Panics)
    }

    fn process(&mut self, _ctx: &mut Context, batch: &Batch<'_>) -> Result<()> {
        if let Some(record) = batch.iter().next() {
            panic!(
                "hostile-trap: deliberate panic at offset {}",
                record.offset()
            );
        }
        Ok(())
    }
}

weir_guest::export_processor!(Panics);
