//! Hostile test guest: `process` never returns (the engine's CPU-time limit must stop it).

use weir_guest::{Batch, Config, Context, Processor, Result};

struct Spin;

impl Processor for Spin {
    fn init(_ctx: &mut Context, _config: &Config) -> Result<Self> {
        Ok(Spin)
    }

    fn process(&mut self, _ctx: &mut Context, _batch: &Batch<'_>) -> Result<()> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

weir_guest::export_processor!(Spin);
