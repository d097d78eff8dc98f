//! `weir function create|list|delete` (user-defined SQL functions, WebAssembly components
//! uploaded to `/v1/functions`) and `weir artifact put` (a raw upload to `/v1/artifacts`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::multipart::Form;
use serde_json::{Value, json};

use super::client::Client;
use super::output::{print, table};
use super::upload::Upload;

#[derive(Debug, Subcommand)]
pub enum FunctionCommand {
    /// Upload a function (a WebAssembly component) that SQL statements can call
    Create {
        /// Function name
        name: String,
        /// The component (.wasm)
        file: PathBuf,
        /// Replace an existing function of that name
        #[arg(long)]
        replace: bool,
    },
    /// List functions with their signatures
    List,
    /// Delete a function
    Delete {
        /// Function name
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Upload a file (e.g. a WebAssembly component) under a name
    Put {
        /// Artifact name
        name: String,
        /// The file to upload
        file: PathBuf,
    },
}

/// The JSON of a response body, or `null` when it is empty or not JSON.
async fn body_json(client: &Client, response: reqwest::Response) -> Result<Value> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| client.transport_error(e))?;
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub async fn run(client: &Client, command: FunctionCommand) -> Result<()> {
    match command {
        FunctionCommand::Create {
            name,
            file,
            replace,
        } => {
            let upload = Upload::read(&file, "function.wasm").await?;
            let spec = json!({"name": name, "replace": replace});
            let form = Form::new()
                .text("spec", spec.to_string())
                .part("wasm", upload.wasm_part()?);
            let result = client
                .send(client.post(&["v1", "functions"]).multipart(form))
                .await;
            upload.bar.finish_and_clear();
            let f = body_json(client, result?).await?;
            print(&format!(
                "{} function {name}{}\n",
                if replace {
                    "created or replaced"
                } else {
                    "created"
                },
                signature(&f["signature"])
            ))?;
        }
        FunctionCommand::List => {
            let list: Value = client.json(client.get(&["v1", "functions"])).await?;
            print(&list_table(&list))?;
        }
        FunctionCommand::Delete { name } => {
            client
                .send(client.delete(&["v1", "functions", &name]))
                .await?;
            print(&format!("deleted function {name}\n"))?;
        }
    }
    Ok(())
}

pub async fn run_artifact(client: &Client, command: ArtifactCommand) -> Result<()> {
    match command {
        ArtifactCommand::Put { name, file } => {
            let upload = Upload::read(&file, "artifact").await?;
            let request = client
                .put(&["v1", "artifacts", &name])
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, upload.len())
                .body(upload.body());
            let result = client.send(request).await;
            upload.bar.finish_and_clear();
            result?;
            print(&format!(
                "uploaded artifact {name} ({} bytes)\n",
                upload.len()
            ))?;
        }
    }
    Ok(())
}

/// `(text, int) -> text`, or empty without a signature.
fn signature(s: &Value) -> String {
    if !s.is_object() {
        return String::new();
    }
    let params: Vec<String> = s["params"]
        .as_array()
        .map(|p| p.iter().map(plain).collect())
        .unwrap_or_default();
    format!("({}) -> {}", params.join(", "), plain(&s["returns"]))
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn list_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["functions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let signature = signature(&f["signature"]);
            vec![
                plain(&f["name"]),
                plain(&f["kind"]),
                if signature.is_empty() {
                    "-".to_string()
                } else {
                    signature
                },
                f["created_ms"]
                    .as_i64()
                    .map_or_else(|| "-".to_string(), utc_time),
            ]
        })
        .collect();
    table(&["NAME", "KIND", "SIGNATURE", "CREATED"], &rows)
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SSZ` (UTC).
fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc_time(1_700_000_000_123), "2023-11-14 22:13:20Z");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc_time(-1000), "1969-12-31 23:59:59Z");
    }

    #[test]
    fn functions_list_as_a_table() {
        let t = list_table(&json!({"functions": [
            {"name": "mask", "kind": "scalar",
             "signature": {"params": ["text", "int"], "returns": "text"},
             "created_ms": 1_700_000_000_000_i64},
            {"name": "odd", "kind": "scalar"}
        ]}));
        assert_eq!(
            t,
            "NAME  KIND    SIGNATURE            CREATED\n\
             mask  scalar  (text, int) -> text  2023-11-14 22:13:20Z\n\
             odd   scalar  -                    -\n"
        );
        assert_eq!(list_table(&json!({})), "NAME  KIND  SIGNATURE  CREATED\n");
    }
}
