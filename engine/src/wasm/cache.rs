//! On-disk cache of compiled components, so that a restart (or a second deployment of the
//! same bytes) deserializes in about a millisecond instead of compiling for 50–100 ms (or
//! seconds, for a Python or JavaScript guest).
//!
//! An artifact is `<cache_dir>/<sha256>.cwasm`, keyed by the component bytes, the wasmtime
//! version and the engine's compilation settings
//! (`Engine::precompile_compatibility_hash`). Files are written to a temporary name and
//! renamed, so a reader sees a whole artifact or none. The cache directory is trusted like
//! the rest of the data directory: a `.cwasm` is native code that wasmtime maps and runs.

use super::error::WasmError;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bumped when anything about how artifacts are produced changes.
const FORMAT: &str = "weir-wasm-cache-v1 wasmtime-48.0.8";

/// Where compiled components live.
pub struct ArtifactCache {
    dir: PathBuf,
    /// Hash of the engine's compilation settings, shared by all keys.
    engine_hash: [u8; 32],
}

/// Feeds `Hash` output into SHA-256.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Whether a component came from the cache or was compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cached,
    Compiled,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ArtifactCache {
    pub fn open(dir: &Path, engine: &Engine) -> Result<ArtifactCache, WasmError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| WasmError::Cache(format!("cannot create {}: {e}", dir.display())))?;
        // Leftovers of writes interrupted by a crash.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let mut h = ShaHasher(Sha256::new());
        FORMAT.hash(&mut h);
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_hash: h.0.finalize().into(),
        })
    }

    /// The file an artifact of `wasm` lives in.
    pub fn path_for(&self, wasm: &[u8]) -> PathBuf {
        let mut h = Sha256::new();
        h.update(self.engine_hash);
        h.update(wasm);
        let digest = h.finalize();
        let mut name = String::with_capacity(64 + 6);
        for b in digest {
            name.push_str(&format!("{b:02x}"));
        }
        name.push_str(".cwasm");
        self.dir.join(name)
    }

    /// The compiled `wasm`: from the cache if there, else compiled with `compile` and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        compile: impl FnOnce() -> Result<Component, WasmError>,
    ) -> Result<(Component, Origin), WasmError> {
        let path = self.path_for(wasm);
        // Read into memory rather than mapped (`deserialize_file`): a mapped file that
        // something truncates underneath would crash the process with SIGBUS.
        if let Ok(bytes) = std::fs::read(&path) {
            // SAFETY: the artifact was written by `store` below (serialized by this same
            // wasmtime with the same settings, which `deserialize` checks again), into a
            // directory the server owns and trusts.
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(c) => return Ok((c, Origin::Cached)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e,
                        "unusable compiled component in the cache; compiling again");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = compile()?;
        self.store(&path, &component)?;
        Ok((component, Origin::Compiled))
    }

    fn store(&self, path: &Path, component: &Component) -> Result<(), WasmError> {
        let bytes = component
            .serialize()
            .map_err(|e| WasmError::Cache(format!("cannot serialize a compiled component: {e}")))?;
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            WasmError::Cache(format!("cannot write {}: {e}", path.display()))
        })
    }
}
