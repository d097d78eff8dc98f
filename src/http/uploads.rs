//! Uploads (processor modules, functions, artifacts): how many may run at once, and where
//! their bytes go while they arrive. Each upload holds a permit of [`Uploads`] from before
//! its body is read until its handler is done (over the cap: `503 too_many_uploads` at
//! once, not a wait), and its module part streams to a temporary file under the upload
//! directory (`<data-dir>/uploads`, emptied at start); the module is read back from there
//! only once the whole request has arrived and been checked. The file is removed when the
//! upload is dropped, on every path: success, error, or the client going away mid-upload.
//!
//! It knows nothing of what an upload holds (that is `processors.rs` and `functions.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::multipart::Multipart;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// Default number of uploads that may run at once.
pub const DEFAULT_MAX_CONCURRENT_UPLOADS: usize = 4;

/// The upload cap and spool directory, shared by the upload routes (a request extension).
#[derive(Debug)]
pub struct Uploads {
    /// `None`: the system's temporary directory (tests of the router).
    dir: Option<PathBuf>,
    permits: Arc<Semaphore>,
    max: usize,
}

/// A running upload's place under the cap; released when dropped.
#[derive(Debug)]
pub struct UploadPermit(#[allow(dead_code)] OwnedSemaphorePermit);

/// Empties (files left by a crash) and creates the upload directory. Called at start.
pub fn reset_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)
}

impl Uploads {
    pub fn new(dir: Option<PathBuf>, max_concurrent: usize) -> Arc<Uploads> {
        let max = max_concurrent.max(1);
        Arc::new(Uploads {
            dir,
            permits: Arc::new(Semaphore::new(max)),
            max,
        })
    }

    /// The upload settings of a request (set by the router on the upload routes).
    pub fn of(req: &Request) -> Result<Arc<Uploads>, ApiError> {
        req.extensions()
            .get::<Arc<Uploads>>()
            .cloned()
            .ok_or_else(|| ApiError::internal("upload route without upload settings"))
    }

    /// A place under the cap, or `503 too_many_uploads` at once (the body is left unread,
    /// so the connection is closed).
    pub fn admit(&self) -> Result<UploadPermit, ApiError> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => Ok(UploadPermit(p)),
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_uploads",
                format!(
                    "{} uploads are in progress (the limit, --max-concurrent-uploads); retry later",
                    self.max
                ),
            )
            .closing()),
        }
    }

    /// Streams `chunks` to a new temporary file; at most `limit` bytes (more is a 413).
    pub async fn spool<E>(
        &self,
        mut chunks: impl Stream<Item = Result<Bytes, E>> + Unpin,
        limit: u64,
    ) -> Result<Spooled, ApiError>
    where
        ApiError: From<E>,
    {
        let dir = self.dir.clone().unwrap_or_else(std::env::temp_dir);
        let created = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            tempfile::Builder::new().prefix("upload-").tempfile_in(&dir)
        })
        .await
        .map_err(|e| ApiError::internal(format!("cannot spool the upload: {e}")))?;
        let (file, path) = created
            .map_err(|e| ApiError::internal(format!("cannot create an upload file: {e}")))?
            .into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut len = 0u64;
        let io_error = |e: std::io::Error| {
            ApiError::internal(format!(
                "cannot write the upload to {}: {e}",
                path.display()
            ))
        };
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            len += chunk.len() as u64;
            if len > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("upload is over the limit of {limit} bytes"),
                )
                .closing());
            }
            file.write_all(&chunk).await.map_err(io_error)?;
        }
        file.flush().await.map_err(io_error)?;
        Ok(Spooled { path, len })
    }
}

/// An upload's bytes in a temporary file, removed when this is dropped.
#[derive(Debug)]
pub struct Spooled {
    path: TempPath,
    len: u64,
}

impl Spooled {
    /// Reads the bytes back (once the request is complete and its other parts checked).
    pub async fn read(&self) -> Result<Bytes, ApiError> {
        let data = tokio::fs::read(&*self.path).await.map_err(|e| {
            ApiError::internal(format!(
                "cannot read the upload back from {}: {e}",
                self.path.display()
            ))
        })?;
        if data.len() as u64 != self.len {
            return Err(ApiError::internal(format!(
                "upload file {} changed while it was read",
                self.path.display()
            )));
        }
        Ok(Bytes::from(data))
    }
}

/// The parts of a module upload (`POST /v1/processors`, `POST /v1/functions`): the `spec`
/// (JSON bytes, small) and the `wasm` module, with the upload's permit.
#[derive(Debug)]
pub struct ModuleUpload {
    pub spec: Bytes,
    pub module: Bytes,
    pub permit: UploadPermit,
}

/// An upload let in: its request (body unread), the upload settings, the route's byte
/// limit and its place under the cap.
struct Admitted {
    req: Request,
    uploads: Arc<Uploads>,
    limit: u64,
    permit: UploadPermit,
}

/// The admission every upload goes through before its body is read: the route's upload
/// settings and limit, a `Content-Length` over the limit refused (413), then a place under
/// the cap (`503 too_many_uploads` at once).
async fn admit_upload(req: Request) -> Result<Admitted, ApiError> {
    let uploads = Uploads::of(&req)?;
    let limit = req
        .extensions()
        .get::<super::processors::UploadLimit>()
        .map_or(u64::MAX, |l| l.0 as u64);
    let req = super::processors::check_upload_size(req).await?;
    let permit = uploads.admit()?;
    Ok(Admitted {
        req,
        uploads,
        limit,
        permit,
    })
}

/// Reads a multipart module upload: admitted under the cap, `wasm` spooled to a file and
/// read back once every part has arrived; each part exactly once (`400 duplicate_field`),
/// no other parts. `what` names the upload in errors ("an upload", "a function upload").
pub async fn read_module_upload<S: Send + Sync>(
    req: Request,
    state: &S,
    what: &str,
) -> Result<ModuleUpload, ApiError> {
    let Admitted {
        req,
        uploads,
        limit,
        permit,
    } = admit_upload(req).await?;
    let mut multipart = Multipart::from_request(req, state).await?;
    let mut spec = None;
    let mut module = None;
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "wasm" if module.is_some() => return Err(duplicate_field(&name)),
            "spec" if spec.is_some() => return Err(duplicate_field(&name)),
            "wasm" => module = Some(uploads.spool(field, limit).await?),
            "spec" => spec = Some(field.bytes().await?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected part '{other}': {what} has the parts 'wasm' and 'spec'"
                ))
                .closing());
            }
        }
    }
    let spec = spec.ok_or_else(|| ApiError::bad_request("missing part 'spec'"))?;
    let module = module.ok_or_else(|| ApiError::bad_request("missing part 'wasm'"))?;
    Ok(ModuleUpload {
        spec,
        module: module.read().await?,
        permit,
    })
}

/// Reads a raw upload body (`PUT /v1/artifacts/{name}`): admitted under the cap, spooled
/// to a file (at most the route's upload limit) and read back once complete.
pub async fn read_raw_upload(req: Request) -> Result<(Bytes, UploadPermit), ApiError> {
    let Admitted {
        req,
        uploads,
        limit,
        permit,
    } = admit_upload(req).await?;
    let body = req.into_body().into_data_stream().map(|r| {
        r.map_err(|e| ApiError::bad_request(format!("cannot read the upload: {e}")).closing())
    });
    let spooled = uploads.spool(body, limit).await?;
    Ok((spooled.read().await?, permit))
}

/// `400 duplicate_field` for a multipart part sent twice (never last-wins).
pub fn duplicate_field(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "duplicate_field",
        format!("the part '{name}' is sent more than once"),
    )
    .closing()
}
