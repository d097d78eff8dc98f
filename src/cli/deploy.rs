//! `weir deploy FILE.wasm --input T --output O …`: uploads a processor component with its
//! spec (multipart `POST /v1/processors`, or `PUT` with `--update`), with a progress bar on
//! the terminal for large files. `parse_pair` (`KEY=VALUE` flags) is shared with `weir sql`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use reqwest::multipart::Form;
use serde_json::{Map, Value, json};

use super::client::Client;
use super::output::print;
use super::upload::Upload;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnErrorArg {
    /// Stop the task (status failed, with the error and the offset)
    Fail,
    /// Skip the record (counted and logged)
    Skip,
    /// Send the record to <processor>.dlq with the error in the header weir.error
    DeadLetter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartArg {
    /// From the first record still in each input
    Earliest,
    /// Only records appended after the deployment
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GuaranteeArg {
    /// Outputs visible at once; after a crash some input may be processed twice
    AtLeastOnce,
    /// Each commit interval is one transaction: outputs, state and offsets visible
    /// together at commit (single node)
    ExactlyOnce,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The processor: a WebAssembly component (.wasm)
    pub file: PathBuf,
    /// Processor name (default: the file name without `.wasm`)
    #[arg(long)]
    pub name: Option<String>,
    /// Input topic; repeat for several (they need the same number of partitions)
    #[arg(long = "input", value_name = "TOPIC", required = true)]
    pub inputs: Vec<String>,
    /// Output topic; repeat for several (the first is the default output)
    #[arg(long = "output", value_name = "TOPIC")]
    pub outputs: Vec<String>,
    /// Configuration passed to the processor's init; repeat for several
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub config: Vec<(String, String)>,
    /// What a task does when the processor fails on a record
    #[arg(long, value_enum, default_value_t = OnErrorArg::Fail)]
    pub on_error: OnErrorArg,
    /// Where to start in inputs without committed offsets (first deployment)
    #[arg(long, value_enum, default_value_t = StartArg::Earliest)]
    pub start: StartArg,
    /// A sandbox limit (memory_bytes, cpu_ms_per_call, max_output_records_per_call,
    /// max_output_bytes_per_call, max_module_bytes); repeat for several
    #[arg(long = "limit", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub limits: Vec<(String, String)>,
    /// How often tasks commit state and offsets (ms)
    #[arg(long, value_name = "MS")]
    pub commit_interval_ms: Option<u64>,
    /// Processing guarantee (default at-least-once)
    #[arg(long, value_enum)]
    pub guarantee: Option<GuaranteeArg>,
    /// On a cluster: how many other nodes keep a warm standby of each task's state
    /// (0 to 3; default 1)
    #[arg(long, value_name = "N")]
    pub standby_replicas: Option<u16>,
    /// Replace the running processor of that name with this version (keeps its state
    /// and offsets) instead of deploying a new one
    #[arg(long)]
    pub update: bool,
}

pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

impl DeployArgs {
    fn name(&self) -> Result<String> {
        if let Some(n) = &self.name {
            return Ok(n.clone());
        }
        let stem = self
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if stem.is_empty() {
            bail!(
                "cannot derive a processor name from {}; pass --name",
                self.file.display()
            );
        }
        Ok(stem)
    }

    /// The spec JSON.
    pub fn spec(&self) -> Result<Value> {
        let mut limits = Map::new();
        for (k, v) in &self.limits {
            let n: u64 = v
                .parse()
                .with_context(|| format!("--limit {k}={v}: the value must be a whole number"))?;
            limits.insert(k.clone(), json!(n));
        }
        let config: Map<String, Value> = self
            .config
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut spec = json!({
            "name": self.name()?,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "config": config,
            "on_error": match self.on_error {
                OnErrorArg::Fail => "fail",
                OnErrorArg::Skip => "skip",
                OnErrorArg::DeadLetter => "dead_letter",
            },
            "start": match self.start {
                StartArg::Earliest => "earliest",
                StartArg::Latest => "latest",
            },
            "limits": limits,
        });
        if let Some(ms) = self.commit_interval_ms {
            spec["commit_interval_ms"] = json!(ms);
        }
        if let Some(n) = self.standby_replicas {
            spec["standby_replicas"] = json!(n);
        }
        if let Some(g) = self.guarantee {
            spec["guarantee"] = json!(match g {
                GuaranteeArg::AtLeastOnce => "at_least_once",
                GuaranteeArg::ExactlyOnce => "exactly_once",
            });
        }
        Ok(spec)
    }
}

pub async fn run(client: &Client, args: DeployArgs) -> Result<()> {
    let spec = args.spec()?;
    let name = args.name()?;
    let upload = Upload::read(&args.file, "processor.wasm").await?;
    let form = Form::new()
        .text("spec", spec.to_string())
        .part("wasm", upload.wasm_part()?);
    let request = if args.update {
        client.put(&["v1", "processors", &name])
    } else {
        client.post(&["v1", "processors"])
    };
    let result: Result<Value> = client.json(request.multipart(form)).await;
    upload.bar.finish_and_clear();
    let d = result?;
    let partitions = d["partitions"].as_i64().unwrap_or(0);
    let version = d["version"].as_u64().unwrap_or(0);
    let outputs: Vec<String> = args.outputs.clone();
    print(&format!(
        "{} processor {name} (version {version}, {partitions} task{}): {} -> {}\n",
        if args.update { "updated" } else { "deployed" },
        if partitions == 1 { "" } else { "s" },
        args.inputs.join(", "),
        if outputs.is_empty() {
            "(no outputs)".to_string()
        } else {
            outputs.join(", ")
        },
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        deploy: DeployArgs,
    }

    #[test]
    fn flags_make_a_spec() {
        let t = T::try_parse_from([
            "weir",
            "dir/word-count.wasm",
            "--input",
            "text",
            "--input",
            "more",
            "--output",
            "counts",
            "--config",
            "k=v=w",
            "--on-error",
            "dead-letter",
            "--limit",
            "cpu_ms_per_call=100",
        ])
        .unwrap();
        let spec = t.deploy.spec().unwrap();
        assert_eq!(spec["name"], "word-count");
        assert_eq!(spec["inputs"], json!(["text", "more"]));
        assert_eq!(spec["config"]["k"], "v=w");
        assert_eq!(spec["on_error"], "dead_letter");
        assert_eq!(spec["start"], "earliest");
        assert_eq!(spec["limits"]["cpu_ms_per_call"], 100);
        assert!(T::try_parse_from(["weir", "x.wasm"]).is_err());
        assert!(
            T::try_parse_from(["weir", "x.wasm", "--input", "t", "--config", "novalue"]).is_err()
        );
        let t = T::try_parse_from([
            "weir",
            "x.wasm",
            "--input",
            "t",
            "--limit",
            "memory_bytes=lots",
        ])
        .unwrap();
        assert!(t.deploy.spec().is_err());
    }
}
