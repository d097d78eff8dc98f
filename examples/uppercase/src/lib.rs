//! `uppercase`: a stateless map. Every record goes to the output with its value's ASCII letters
//! in upper case; key, headers and timestamp are kept.
//!
//! Config: `output` (optional): the output to write to; default: the processor's first output.

use weir_guest::{Batch, Config, Context, Emit, Processor, Result};

struct Uppercase {
    output: String,
    /// Reused for every value (no allocation per record).
    scratch: Vec<u8>,
}

impl Processor for Uppercase {
    fn init(_ctx: &mut Context, config: &Config) -> Result<Self> {
        Ok(Uppercase {
            output: config.get("output").unwrap_or("").to_string(),
            scratch: Vec::new(),
        })
    }

    fn process(&mut self, ctx: &mut Context, batch: &Batch<'_>) -> Result<()> {
        for record in batch {
            let value = match record.value() {
                Some(v) => {
                    self.scratch.clear();
                    self.scratch.extend_from_slice(v);
                    self.scratch.make_ascii_uppercase();
                    Some(self.scratch.as_slice())
                }
                None => None,
            };
            let mut out = Emit::to(&self.output)
                .key_opt(record.key())
                .value_opt(value)
                .timestamp(record.timestamp());
            for (name, value) in record.headers() {
                out = match value {
                    Some(v) => out.header(name, v),
                    None => out.null_header(name),
                };
            }
            ctx.emit(out)?;
        }
        Ok(())
    }
}

weir_guest::export_processor!(Uppercase);
