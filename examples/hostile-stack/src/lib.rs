//! Hostile test guest: `process` recurses without bound (a stack overflow trap).

use weir_guest::{Batch, Config, Context, Processor, Result};

struct Recurse;

#[inline(never)]
#[allow(unconditional_recursion)]
fn deeper(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 16]);
    deeper(frame[3].wrapping_add(1)).wrapping_add(frame[7])
}

impl Processor for Recurse {
    fn init(_ctx: &mut Context, _config: &Config) -> Result<Self> {
        Ok(Recurse)
    }

    fn process(&mut self, _ctx: &mut Context, batch: &Batch<'_>) -> Result<()> {
        std::hint::black_box(deeper(batch.len() as u64));
        Ok(())
    }
}

weir_guest::export_processor!(Recurse);
