//! Uploading WebAssembly files (`weir deploy`, `weir function create`, `weir artifact put`):
//! reading the file, a progress bar on the terminal for large files, and request bodies whose
//! sending advances the bar.

use std::path::Path;

use anyhow::{Context, Result};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Body;
use reqwest::multipart::Part;

/// Files at least this large get a progress bar.
const PROGRESS_MIN_BYTES: u64 = 1 << 20;
const CHUNK_BYTES: usize = 64 << 10;

/// A file to upload.
pub struct Upload {
    pub bytes: Bytes,
    /// The file name (for the multipart part).
    pub file_name: String,
    /// Shows progress (hidden for small files); `finish_and_clear` it when the request ends.
    pub bar: ProgressBar,
}

impl Upload {
    /// Reads `path`; `default_name` names the part when the path has no file name.
    pub async fn read(path: &Path, default_name: &str) -> Result<Upload> {
        let bytes = tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file_name = path.file_name().map_or_else(
            || default_name.to_string(),
            |f| f.to_string_lossy().into_owned(),
        );
        let bar = progress_bar(bytes.len() as u64);
        Ok(Upload {
            bytes: Bytes::from(bytes),
            file_name,
            bar,
        })
    }

    /// The size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// A body streaming the bytes and advancing the bar.
    pub fn body(&self) -> Body {
        let bytes = self.bytes.clone();
        let bar = self.bar.clone();
        let chunks: Vec<Bytes> = (0..bytes.len())
            .step_by(CHUNK_BYTES)
            .map(|i| bytes.slice(i..(i + CHUNK_BYTES).min(bytes.len())))
            .collect();
        let stream = futures_util::stream::iter(chunks.into_iter().map(move |c| {
            bar.inc(c.len() as u64);
            Ok::<Bytes, std::io::Error>(c)
        }));
        Body::wrap_stream(stream)
    }

    /// The bytes as a multipart part of type `application/wasm`.
    pub fn wasm_part(&self) -> Result<Part> {
        Part::stream_with_length(self.body(), self.len())
            .file_name(self.file_name.clone())
            .mime_str("application/wasm")
            .context("cannot build the upload")
    }
}

/// A progress bar for `total` bytes, hidden below [`PROGRESS_MIN_BYTES`].
fn progress_bar(total: u64) -> ProgressBar {
    if total < PROGRESS_MIN_BYTES {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
