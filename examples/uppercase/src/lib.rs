//! `uppercase`: a stateless map. Every record goes to the output with its value's ASCII letters
//! in upper case; key, headers and timestamp are kept.
//!
//! Config: `output` (optional): the output to write to; default: the processor's first output.

use weir_guest::{Batch, Config, Context, Emit, Processor, Result};

struct Uppercase {
    output: String,
}

impl Processor for Uppercase {
    fn init(_ctx: &mut Context, config: &Config) -> Result<Self> {
        Ok(Uppercase {
            output: config.get("output").unwrap_or("").to_string(),
        })
    }

    fn process(&mut self, ctx: &mut Context, batch: &Batch<'_>) -> Result<()> {
        for record in batch {
            let mut out = Emit::to(&self.output)
                .key_opt(record.key())
                .timestamp(record.timestamp());
            for (name, value) in record.headers() {
                out = match value {
                    Some(v) => out.header(name, v),
                    None => out.null_header(name),
                };
            }
            match record.value() {
                // Written straight into the output buffer: no intermediate Vec.
                Some(v) => ctx.emit_with(out, |buf| {
                    let start = buf.len();
                    buf.extend_from_slice(v);
                    buf[start..].make_ascii_uppercase();
                })?,
                None => ctx.emit(out)?,
            }
        }
        Ok(())
    }
}

weir_guest::export_processor!(Uppercase);
