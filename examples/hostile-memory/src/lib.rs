//! Hostile test guest: `process` allocates (and touches) memory until something stops it (the
//! engine's memory limit must).

use weir_guest::{Batch, Config, Context, Processor, Result};

struct Bomb {
    hoard: Vec<Vec<u8>>,
}

impl Processor for Bomb {
    fn init(_ctx: &mut Context, _config: &Config) -> Result<Self> {
        Ok(Bomb { hoard: Vec::new() })
    }

    fn process(&mut self, _ctx: &mut Context, _batch: &Batch<'_>) -> Result<()> {
        loop {
            let chunk = vec![0xa5u8; 1 << 20];
            self.hoard.push(std::hint::black_box(chunk));
        }
    }
}

weir_guest::export_processor!(Bomb);
