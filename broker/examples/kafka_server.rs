//! A bare Kafka-protocol server over a Weir log, for trying clients and for benchmarks
//! without the HTTP API: `cargo run -p weir-broker --example kafka_server -- DATA_DIR [ADDR]`
//! (ADDR defaults to 127.0.0.1:9092). Ctrl-C stops it cleanly. `weir serve --kafka ADDR` is
//! the real entry point; this example exists to exercise `weir_broker::kafka::serve` alone.
//! With `WEIR_TLS_CERT` and `WEIR_TLS_KEY` (PEM files) set it serves Kafka `SSL` (for the
//! TLS-vs-plaintext benchmark).

use weir_broker::kafka::{KafkaConfig, serve};
use weir_broker::net::{TlsFiles, TlsServer};
use weir_broker::{Broker, BrokerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: kafka_server DATA_DIR [ADDR]")?;
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let broker = Broker::open(BrokerConfig::new(dir))?;
    let background = broker.start_background();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let tls = match (
        std::env::var_os("WEIR_TLS_CERT"),
        std::env::var_os("WEIR_TLS_KEY"),
    ) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: cert.into(),
                key: key.into(),
                client_ca: None,
            };
            Some(TlsServer::load(&files, &[])?)
        }
        _ => None,
    };
    let config = KafkaConfig {
        tls,
        ..KafkaConfig::default()
    };
    serve(broker.clone(), listener, config, shutdown).await?;
    background.stop().await;
    broker.flush_all()?;
    Ok(())
}
