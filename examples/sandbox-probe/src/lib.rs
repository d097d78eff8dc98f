//! Test guest: on each batch, emits one record per probe of the sandbox (`name` → what it
//! saw), logs through `context.log`, and prints to stdout and stderr. The engine's tests check
//! that guests see no environment, arguments, files, clock or network.

use std::time::{SystemTime, UNIX_EPOCH};
use weir_guest::{Batch, Config, Context, Emit, LogLevel, Processor, Result};

struct Probe;

fn report(ctx: &mut Context, name: &str, value: String) -> Result<()> {
    ctx.emit(Emit::new().key(name).value(&value))
}

impl Processor for Probe {
    fn init(_ctx: &mut Context, _config: &Config) -> Result<Self> {
        Ok(Probe)
    }

    fn process(&mut self, ctx: &mut Context, batch: &Batch<'_>) -> Result<()> {
        println!("probe stdout: {} records", batch.len());
        eprintln!("probe stderr: partition {}", ctx.partition());
        ctx.log(LogLevel::Warn, "probe log message");
        report(ctx, "env", std::env::vars().count().to_string())?;
        report(ctx, "args", std::env::args().count().to_string())?;
        let fs = match std::fs::read_dir("/") {
            Ok(_) => "readable".to_string(),
            Err(e) => format!("error: {e}"),
        };
        report(ctx, "fs", fs)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        report(ctx, "clock", now.to_string())?;
        let net = match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => "connected".to_string(),
            Err(e) => format!("error: {e}"),
        };
        report(ctx, "net", net)?;
        report(ctx, "stream_time", ctx.stream_time().to_string())?;
        Ok(())
    }
}

weir_guest::export_processor!(Probe);
