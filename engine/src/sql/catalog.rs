//! The SQL catalog: streams and tables (name, topic, columns, formats, timestamp column,
//! window of a windowed table) and the persistent queries that write them, persisted as one
//! JSON file (`<dir>/catalog.json`, replaced atomically). The queries' running state belongs
//! to the engine's processors; the catalog only names them.
//!
//! On a cluster ([`Catalog::set_publisher`]) the streams, tables and queries are the
//! cluster's: every change is published ([`SqlCatalogPublisher`]) before it is made here (a
//! refusal changes nothing), and [`Catalog::follow`] takes what the cluster's catalog holds
//! (the SQL service calls it under the same lock statements hold, so a statement's changes are
//! never overwritten by a follower working from older metadata). The local file is then only
//! a cache of the cluster's catalog; the query-id counter stays local but moves past every
//! id the cluster's catalog holds (two nodes making a query for the same sink at the same
//! moment may pick the same id: the second deploy is refused, the processor exists).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ast::{ColumnDef, SourceKind, WindowSpec};
use super::error::SqlError;
use crate::catalog::SqlCatalogPublisher;

/// A stream or table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceDef {
    pub name: String,
    pub kind: SourceKind,
    pub topic: String,
    pub columns: Vec<ColumnDef>,
    pub value_format: String,
    /// The column event time comes from (else the record timestamp).
    pub timestamp: Option<String>,
    pub partitions: i32,
    /// Set for a table made by a windowed aggregation.
    #[serde(default)]
    pub window: Option<WindowSpec>,
    /// The persistent query that writes it (CREATE ... AS SELECT).
    #[serde(default)]
    pub query: Option<String>,
    /// The statement that created it.
    pub sql: String,
}

impl SourceDef {
    pub fn key_column(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.key)
    }

    pub fn timestamp_index(&self) -> Option<usize> {
        let ts = self.timestamp.as_ref()?;
        self.columns.iter().position(|c| &c.name == ts)
    }
}

/// A persistent (or transient push) query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryDef {
    pub id: String,
    pub sql: String,
    /// The stream/table it writes.
    pub sink: String,
    /// The streams/tables it reads.
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CatalogData {
    sources: BTreeMap<String, SourceDef>,
    queries: BTreeMap<String, QueryDef>,
    next_query_id: u64,
}

/// The catalog, loaded in memory and written through on every change.
pub struct Catalog {
    path: Option<PathBuf>,
    data: CatalogData,
    /// On a cluster: where changes are published first.
    publisher: Option<Arc<dyn SqlCatalogPublisher>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("path", &self.path)
            .field("data", &self.data)
            .field("published", &self.publisher.is_some())
            .finish()
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> SqlError {
    SqlError::new("internal", format!("catalog {}: {e}", path.display()))
}

impl Catalog {
    /// Opens (or creates) the catalog under `dir`.
    pub fn open(dir: &Path) -> Result<Catalog, SqlError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let path = dir.join("catalog.json");
        let data = match std::fs::read(&path) {
            Ok(raw) => serde_json::from_slice(&raw).map_err(|e| io_err(&path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CatalogData::default(),
            Err(e) => return Err(io_err(&path, e)),
        };
        Ok(Catalog {
            path: Some(path),
            data,
            publisher: None,
        })
    }

    /// A catalog that is never written (tests, planning checks).
    pub fn in_memory() -> Catalog {
        Catalog {
            path: None,
            data: CatalogData::default(),
            publisher: None,
        }
    }

    fn save(&self) -> Result<(), SqlError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let json = serde_json::to_vec_pretty(&self.data).map_err(|e| io_err(path, e))?;
        weir_broker::fsutil::write_atomic(path, &json).map_err(|e| io_err(path, e))
    }

    pub fn source(&self, name: &str) -> Option<&SourceDef> {
        self.data.sources.get(name)
    }

    /// A source by name, or an `unknown_source` error.
    pub fn require(&self, name: &str) -> Result<&SourceDef, SqlError> {
        self.source(name).ok_or_else(|| {
            SqlError::new(
                "unknown_source",
                format!("stream or table '{name}' does not exist"),
            )
        })
    }

    pub fn sources(&self) -> impl Iterator<Item = &SourceDef> {
        self.data.sources.values()
    }

    /// Makes the catalog the cluster's: every change is published first.
    pub fn set_publisher(&mut self, publisher: Arc<dyn SqlCatalogPublisher>) {
        self.publisher = Some(publisher);
    }

    /// Takes the cluster's streams, tables and queries (what other nodes created, dropped or
    /// changed); whether anything changed here.
    pub fn follow(
        &mut self,
        sources: BTreeMap<String, SourceDef>,
        queries: BTreeMap<String, QueryDef>,
    ) -> Result<bool, SqlError> {
        if self.data.sources == sources && self.data.queries == queries {
            return Ok(false);
        }
        // Query ids other nodes made are not handed out here again.
        let highest = queries
            .keys()
            .filter_map(|id| id.rsplit('_').next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        self.data.next_query_id = self.data.next_query_id.max(highest);
        self.data.sources = sources;
        self.data.queries = queries;
        self.save()?;
        Ok(true)
    }

    /// Adds or replaces a stream or table (`create`: the statement creates it; see
    /// [`SqlCatalogPublisher::source_put`]).
    pub fn put_source(&mut self, def: SourceDef, create: bool) -> Result<(), SqlError> {
        if let Some(p) = &self.publisher {
            p.source_put(&def, create)?;
        }
        self.data.sources.insert(def.name.clone(), def);
        self.save()
    }

    pub fn remove_source(&mut self, name: &str) -> Result<Option<SourceDef>, SqlError> {
        if let Some(p) = &self.publisher {
            p.source_removed(name)?;
        }
        let removed = self.data.sources.remove(name);
        self.save()?;
        Ok(removed)
    }

    pub fn query(&self, id: &str) -> Option<&QueryDef> {
        self.data.queries.get(id)
    }

    pub fn queries(&self) -> impl Iterator<Item = &QueryDef> {
        self.data.queries.values()
    }

    /// Adds a persistent query (or replaces it: `create` false).
    pub fn put_query(&mut self, q: QueryDef, create: bool) -> Result<(), SqlError> {
        if let Some(p) = &self.publisher {
            p.query_put(&q, create)?;
        }
        self.data.queries.insert(q.id.clone(), q);
        self.save()
    }

    pub fn remove_query(&mut self, id: &str) -> Result<Option<QueryDef>, SqlError> {
        if let Some(p) = &self.publisher {
            p.query_removed(id)?;
        }
        let removed = self.data.queries.remove(id);
        self.save()?;
        Ok(removed)
    }

    /// A new query id `<prefix>_<name>_<n>` (ksqlDB style: `CSAS_X_1`, `CTAS_Y_2`).
    pub fn next_query_id(&mut self, prefix: &str, name: &str) -> Result<String, SqlError> {
        self.data.next_query_id += 1;
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        let id = format!("{prefix}_{clean}_{}", self.data.next_query_id);
        self.save()?;
        Ok(id)
    }

    /// Queries that read `source`.
    pub fn readers_of(&self, source: &str) -> Vec<String> {
        self.data
            .queries
            .values()
            .filter(|q| q.sources.iter().any(|s| s == source))
            .map(|q| q.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str) -> SourceDef {
        SourceDef {
            name: name.into(),
            kind: SourceKind::Stream,
            topic: name.to_lowercase(),
            columns: vec![],
            value_format: "JSON".into(),
            timestamp: None,
            partitions: 1,
            window: None,
            query: None,
            sql: format!("CREATE STREAM {name} ..."),
        }
    }

    /// A cluster's catalog as the publisher sees it: refuses while `refuse` is set.
    #[derive(Default)]
    struct FakeCluster {
        refuse: std::sync::atomic::AtomicBool,
        published: std::sync::Mutex<Vec<String>>,
    }

    impl FakeCluster {
        fn take(&self, what: String) -> Result<(), SqlError> {
            if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(SqlError::new("unavailable", "no quorum"));
            }
            self.published.lock().unwrap().push(what);
            Ok(())
        }
    }

    impl SqlCatalogPublisher for FakeCluster {
        fn source_put(&self, def: &SourceDef, _create: bool) -> Result<(), SqlError> {
            self.take(format!("+{}", def.name))
        }
        fn source_removed(&self, name: &str) -> Result<(), SqlError> {
            self.take(format!("-{name}"))
        }
        fn query_put(&self, def: &QueryDef, _create: bool) -> Result<(), SqlError> {
            self.take(format!("+q{}", def.id))
        }
        fn query_removed(&self, id: &str) -> Result<(), SqlError> {
            self.take(format!("-q{id}"))
        }
    }

    #[test]
    fn on_a_cluster_changes_are_published_first_and_the_clusters_catalog_followed() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(dir.path()).unwrap();
        let cluster = Arc::new(FakeCluster::default());
        c.set_publisher(cluster.clone());
        cluster
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            c.put_source(source("S"), true).unwrap_err().kind(),
            crate::error::ErrorKind::Unavailable
        );
        assert!(c.source("S").is_none());
        cluster
            .refuse
            .store(false, std::sync::atomic::Ordering::SeqCst);
        c.put_source(source("S"), true).unwrap();
        c.put_query(
            QueryDef {
                id: "Q1".into(),
                sql: "…".into(),
                sink: "S".into(),
                sources: vec![],
            },
            true,
        )
        .unwrap();
        cluster
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(c.remove_source("S").is_err());
        assert!(c.remove_query("Q1").is_err());
        assert!(c.source("S").is_some() && c.query("Q1").is_some());
        assert_eq!(*cluster.published.lock().unwrap(), vec!["+S", "+qQ1"]);
        // The cluster's catalog replaces this node's, and is saved.
        let theirs: BTreeMap<String, SourceDef> =
            [("T".to_string(), source("T"))].into_iter().collect();
        assert!(c.follow(theirs.clone(), BTreeMap::new()).unwrap());
        assert!(!c.follow(theirs, BTreeMap::new()).unwrap());
        assert!(c.source("S").is_none() && c.query("Q1").is_none());
        // Query ids the cluster holds are not handed out again.
        let queries: BTreeMap<String, QueryDef> = [(
            "CSAS_X_41".to_string(),
            QueryDef {
                id: "CSAS_X_41".into(),
                sql: "…".into(),
                sink: "X".into(),
                sources: vec![],
            },
        )]
        .into_iter()
        .collect();
        let sources = c.data.sources.clone();
        assert!(c.follow(sources, queries).unwrap());
        cluster
            .refuse
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(c.next_query_id("CSAS", "X").unwrap(), "CSAS_X_42");
        let reopened = Catalog::open(dir.path()).unwrap();
        assert!(reopened.source("T").is_some() && reopened.source("S").is_none());
    }

    #[test]
    fn catalog_persists() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(dir.path()).unwrap();
        c.put_source(source("S"), true).unwrap();
        let id = c.next_query_id("CSAS", "out-x").unwrap();
        assert_eq!(id, "CSAS_OUT_X_1");
        let c = Catalog::open(dir.path()).unwrap();
        assert!(c.source("S").is_some());
        let mut c = c;
        assert_eq!(c.next_query_id("CTAS", "T").unwrap(), "CTAS_T_2");
    }
}
