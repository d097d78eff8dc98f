//! Hostile test guest: `process` emits 1 KiB records forever (the engine's output limit per
//! call must stop it).

use weir_guest::{Batch, Config, Context, Emit, Processor, Result};

struct Flood;

impl Processor for Flood {
    fn init(_ctx: &mut Context, _config: &Config) -> Result<Self> {
        Ok(Flood)
    }

    fn process(&mut self, ctx: &mut Context, _batch: &Batch<'_>) -> Result<()> {
        let value = [b'x'; 1024];
        loop {
            // Errors are ignored on purpose: a hostile guest keeps going.
            let _ = ctx.emit(Emit::new().value(&value));
        }
    }
}

weir_guest::export_processor!(Flood);
