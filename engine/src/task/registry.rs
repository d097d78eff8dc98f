//! Deployments, persisted under the data directory so every processor comes back after a
//! restart: `<dir>/<name>/deployment.json` (spec, version, partition count, paused flag) and
//! `<dir>/<name>/v<version>.wasm` (the current version's module). Every file is written to a
//! temporary name, synced and renamed, module first: a crash leaves the old deployment or the
//! new one, never a mix.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::ProcessorSpec;

const RECORD_FILE: &str = "deployment.json";

/// One deployed processor, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub spec: ProcessorSpec,
    /// 1 for the first deploy, +1 for every redeploy.
    pub version: u64,
    /// Number of tasks (the inputs' partition count at deploy time).
    pub partitions: i32,
    pub paused: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Size of the current module.
    pub module_bytes: u64,
    /// Deployed, installed or published through a cluster's catalog. A deployment without
    /// it was made on a single node: when that node joins a cluster it keeps running every
    /// task there, over its local topics, outside the cluster's placement.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_catalog: bool,
}

/// Why the registry could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("I/O error on {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("corrupt deployment file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl RegistryError {
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::Io { .. } => "io_error",
            RegistryError::Corrupt { .. } => "corrupt_data",
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RegistryError + '_ {
    move |e| RegistryError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The deployments directory.
pub struct Registry {
    dir: PathBuf,
}

/// A deployment read back: its record and module bytes.
pub type Loaded = (DeploymentRecord, Vec<u8>);

fn module_file(version: u64) -> String {
    format!("v{version}.wasm")
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    weir_broker::fsutil::write_atomic(path, bytes).map_err(io(path))
}

impl Registry {
    /// Opens (creating) the deployments directory.
    pub fn open(dir: &Path) -> Result<Registry, RegistryError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(Registry {
            dir: dir.to_path_buf(),
        })
    }

    fn processor_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Every deployment, sorted by name. A deployment that cannot be read is reported as
    /// an error in its slot (the others still load).
    pub fn load_all(&self) -> Result<Vec<Result<Loaded, RegistryError>>, RegistryError> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            if entry.path().join(RECORD_FILE).is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names.iter().map(|n| self.load(n)).collect())
    }

    /// One deployment.
    pub fn load(&self, name: &str) -> Result<Loaded, RegistryError> {
        let dir = self.processor_dir(name);
        let path = dir.join(RECORD_FILE);
        let raw = std::fs::read(&path).map_err(io(&path))?;
        let record: DeploymentRecord =
            serde_json::from_slice(&raw).map_err(|e| RegistryError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let module_path = dir.join(module_file(record.version));
        let module = std::fs::read(&module_path).map_err(io(&module_path))?;
        Ok((record, module))
    }

    /// Saves a deployment; with `module`, it is the module of `record.version` (older
    /// modules are removed once the record points at the new one).
    pub fn save(
        &self,
        record: &DeploymentRecord,
        module: Option<&[u8]>,
    ) -> Result<(), RegistryError> {
        let dir = self.processor_dir(&record.spec.name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if let Some(m) = module {
            write_atomic(&dir.join(module_file(record.version)), m)?;
        }
        let json = serde_json::to_vec_pretty(record).map_err(|e| RegistryError::Corrupt {
            path: dir.join(RECORD_FILE),
            reason: e.to_string(),
        })?;
        write_atomic(&dir.join(RECORD_FILE), &json)?;
        if module.is_some() {
            let keep = module_file(record.version);
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".wasm") && name != keep {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Forgets a deployment.
    pub fn remove(&self, name: &str) -> Result<(), RegistryError> {
        let dir = self.processor_dir(name);
        let record = dir.join(RECORD_FILE);
        // The record goes first: without it the directory is ignored.
        match std::fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&record)(e)),
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_round_trip_and_keep_one_module() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path()).unwrap();
        let spec: ProcessorSpec =
            serde_json::from_str(r#"{"name":"wc","inputs":["t"],"outputs":["o"]}"#).unwrap();
        let mut rec = DeploymentRecord {
            spec,
            version: 1,
            partitions: 2,
            paused: false,
            created_ms: 1,
            updated_ms: 1,
            module_bytes: 3,
            in_catalog: false,
        };
        r.save(&rec, Some(b"one")).unwrap();
        rec.version = 2;
        rec.paused = true;
        r.save(&rec, Some(b"two")).unwrap();
        let all = r.load_all().unwrap();
        assert_eq!(all.len(), 1);
        let (back, module) = all.into_iter().next().unwrap().unwrap();
        assert_eq!(back, rec);
        assert_eq!(module, b"two");
        assert!(!dir.path().join("wc/v1.wasm").exists());
        r.remove("wc").unwrap();
        assert!(r.load_all().unwrap().is_empty());
        r.remove("wc").unwrap();
    }
}
