//! The cluster's functions and SQL catalog in the state machine: bounded records, versions,
//! refusals that change nothing, idempotent retries, old snapshots still read.

use super::super::*;

fn function(name: &str, hash_digit: char, created_ms: i64) -> FunctionRecord {
    FunctionRecord {
        name: name.into(),
        version: 0,
        kind: "scalar".into(),
        signature: serde_json::json!({"params": ["text"], "returns": "text"}),
        module: format!("sha256:{}", hash_digit.to_string().repeat(64)),
        module_bytes: 1234,
        created_ms,
    }
}

fn upsert(m: &mut ClusterMetadata, r: &FunctionRecord, replace: bool) -> CommandResult {
    m.apply(&MetadataCommand::UpsertFunction {
        record: r.clone(),
        replace,
    })
}

/// Applies `cmd` and checks that a refusal changed nothing; returns the refusal's code.
fn refused(m: &mut ClusterMetadata, cmd: MetadataCommand) -> &'static str {
    let before = m.clone();
    let e = m.apply(&cmd).expect_err("not refused");
    assert_eq!(*m, before, "a refusal changed the state: {e}");
    e.code()
}

#[test]
fn a_function_is_registered_replaced_and_deleted_with_versions() {
    let mut m = ClusterMetadata::default();
    let f = function("MASK", 'a', 1);
    assert_eq!(
        upsert(&mut m, &f, false),
        Ok(MetadataResponse::Function { version: 1 })
    );
    assert_eq!(m.functions["MASK"].version, 1);
    // A retried registration (the same record) is taken without a change.
    let before = m.clone();
    assert_eq!(
        upsert(&mut m, &f, false),
        Ok(MetadataResponse::Function { version: 1 })
    );
    assert_eq!(m, before);
    // Another module under the same name needs `replace`.
    let g = function("MASK", 'b', 2);
    let code = refused(
        &mut m,
        MetadataCommand::UpsertFunction {
            record: g.clone(),
            replace: false,
        },
    );
    assert_eq!(code, "function_exists");
    assert_eq!(
        upsert(&mut m, &g, true),
        Ok(MetadataResponse::Function { version: 2 })
    );
    assert_eq!(m.functions["MASK"].module, g.module);
    // Replacing with the record already there changes nothing.
    assert_eq!(
        upsert(&mut m, &g, true),
        Ok(MetadataResponse::Function { version: 2 })
    );
    assert_eq!(
        m.apply(&MetadataCommand::DeleteFunction {
            name: "MASK".into()
        }),
        Ok(MetadataResponse::Done)
    );
    assert!(m.functions.is_empty());
    let code = refused(
        &mut m,
        MetadataCommand::DeleteFunction {
            name: "MASK".into(),
        },
    );
    assert_eq!(code, "unknown_function");
    // Registered again, it starts over.
    assert_eq!(
        upsert(&mut m, &f, false),
        Ok(MetadataResponse::Function { version: 1 })
    );
}

#[test]
fn function_records_are_bounded() {
    let mut m = ClusterMetadata::default();
    let mut bad = Vec::new();
    for name in [
        "",
        "9LIVES",
        "A-B",
        "A B",
        &"X".repeat(MAX_FUNCTION_NAME + 1),
    ] {
        bad.push(function(name, 'a', 1));
    }
    let mut r = function("F", 'a', 1);
    r.module = "sha256:abc".into();
    bad.push(r);
    let mut r = function("F", 'a', 1);
    r.module = format!("md5:{}", "a".repeat(64));
    bad.push(r);
    let mut r = function("F", 'A', 1);
    r.module = format!("sha256:{}", "A".repeat(64));
    bad.push(r);
    let mut r = function("F", 'a', 1);
    r.kind = String::new();
    bad.push(r);
    let mut r = function("F", 'a', 1);
    r.kind = "k".repeat(33);
    bad.push(r);
    let mut r = function("F", 'a', 1);
    r.signature = serde_json::Value::String("s".repeat(MAX_FUNCTION_SIGNATURE_BYTES));
    bad.push(r);
    for r in bad {
        let code = refused(
            &mut m,
            MetadataCommand::UpsertFunction {
                record: r.clone(),
                replace: true,
            },
        );
        assert_eq!(code, "invalid_catalog_object", "{r:?}");
    }
    assert!(upsert(&mut m, &function("F_1", 'a', 1), false).is_ok());
    // The cluster holds at most MAX_FUNCTIONS.
    for i in 1..MAX_FUNCTIONS {
        upsert(&mut m, &function(&format!("G{i}"), 'a', 1), false).unwrap();
    }
    let code = refused(
        &mut m,
        MetadataCommand::UpsertFunction {
            record: function("ONE_MORE", 'a', 1),
            replace: false,
        },
    );
    assert_eq!(code, "invalid_catalog_object");
    // Replacing one that exists is still possible.
    assert!(upsert(&mut m, &function("F_1", 'b', 2), true).is_ok());
}

#[test]
fn sql_sources_and_queries_are_upserted_and_deleted_idempotently() {
    let mut m = ClusterMetadata::default();
    let s = SqlRecord {
        name: "PAGEVIEWS".into(),
        definition: serde_json::json!({"kind": "stream", "topic": "pageviews"}),
    };
    let q = SqlRecord {
        name: "CSAS_OUT_1".into(),
        definition: serde_json::json!({"sink": "OUT"}),
    };
    for _ in 0..2 {
        assert_eq!(
            m.apply(&MetadataCommand::UpsertSqlSource { record: s.clone() }),
            Ok(MetadataResponse::Done)
        );
        assert_eq!(
            m.apply(&MetadataCommand::UpsertSqlQuery { record: q.clone() }),
            Ok(MetadataResponse::Done)
        );
    }
    assert_eq!(m.sql_sources["PAGEVIEWS"], s);
    assert_eq!(m.sql_queries["CSAS_OUT_1"], q);
    // A replacement overwrites.
    let s2 = SqlRecord {
        definition: serde_json::json!({"kind": "stream", "topic": "other"}),
        ..s.clone()
    };
    m.apply(&MetadataCommand::UpsertSqlSource { record: s2.clone() })
        .unwrap();
    assert_eq!(m.sql_sources["PAGEVIEWS"], s2);
    for _ in 0..2 {
        assert_eq!(
            m.apply(&MetadataCommand::DeleteSqlSource {
                name: "PAGEVIEWS".into()
            }),
            Ok(MetadataResponse::Done)
        );
        assert_eq!(
            m.apply(&MetadataCommand::DeleteSqlQuery {
                id: "CSAS_OUT_1".into()
            }),
            Ok(MetadataResponse::Done)
        );
    }
    assert!(m.sql_sources.is_empty() && m.sql_queries.is_empty());
}

#[test]
fn a_sql_create_is_refused_when_another_node_took_the_name() {
    let mut m = ClusterMetadata::default();
    let mine = SqlRecord {
        name: "CLICKS".into(),
        definition: serde_json::json!({"kind": "stream", "topic": "a"}),
    };
    let theirs = SqlRecord {
        definition: serde_json::json!({"kind": "stream", "topic": "b"}),
        ..mine.clone()
    };
    // The first create applied wins; the same record again is a retry and changes nothing.
    for _ in 0..2 {
        assert_eq!(
            m.apply(&MetadataCommand::CreateSqlSource {
                record: mine.clone()
            }),
            Ok(MetadataResponse::Done)
        );
    }
    let code = refused(
        &mut m,
        MetadataCommand::CreateSqlSource {
            record: theirs.clone(),
        },
    );
    assert_eq!(code, "sql_object_exists");
    assert_eq!(m.sql_sources["CLICKS"], mine);
    // A replacement (CREATE OR REPLACE, a query's sink updated) still goes through upsert.
    m.apply(&MetadataCommand::UpsertSqlSource {
        record: theirs.clone(),
    })
    .unwrap();
    assert_eq!(m.sql_sources["CLICKS"], theirs);

    let q = SqlRecord {
        name: "INSERTQUERY_CLICKS_3".into(),
        definition: serde_json::json!({"sink": "CLICKS", "sql": "INSERT INTO CLICKS SELECT 1"}),
    };
    m.apply(&MetadataCommand::CreateSqlQuery { record: q.clone() })
        .unwrap();
    let other = SqlRecord {
        definition: serde_json::json!({"sink": "CLICKS", "sql": "INSERT INTO CLICKS SELECT 2"}),
        ..q.clone()
    };
    assert_eq!(
        refused(&mut m, MetadataCommand::CreateSqlQuery { record: other }),
        "sql_object_exists"
    );
    // Bounds hold for creates as for upserts.
    let long = SqlRecord {
        name: "x".repeat(MAX_SQL_NAME + 1),
        definition: serde_json::Value::Null,
    };
    assert_eq!(
        refused(&mut m, MetadataCommand::CreateSqlSource { record: long }),
        "invalid_catalog_object"
    );
}

#[test]
fn sql_records_are_bounded() {
    let mut m = ClusterMetadata::default();
    let long = SqlRecord {
        name: "S".into(),
        definition: serde_json::Value::String("x".repeat(MAX_SQL_DEFINITION_BYTES)),
    };
    for record in [
        SqlRecord::default(),
        SqlRecord {
            name: "A\nB".into(),
            ..SqlRecord::default()
        },
        SqlRecord {
            name: "N".repeat(MAX_SQL_NAME + 1),
            ..SqlRecord::default()
        },
        long,
    ] {
        let code = refused(
            &mut m,
            MetadataCommand::UpsertSqlSource {
                record: record.clone(),
            },
        );
        assert_eq!(code, "invalid_catalog_object");
        let code = refused(&mut m, MetadataCommand::UpsertSqlQuery { record });
        assert_eq!(code, "invalid_catalog_object");
    }
}

#[test]
fn a_batch_with_a_refused_function_changes_nothing_and_old_snapshots_read() {
    let mut m = ClusterMetadata::default();
    upsert(&mut m, &function("F", 'a', 1), false).unwrap();
    let code = refused(
        &mut m,
        MetadataCommand::Batch {
            commands: vec![
                MetadataCommand::UpsertSqlSource {
                    record: SqlRecord {
                        name: "S".into(),
                        definition: serde_json::json!({}),
                    },
                },
                MetadataCommand::DeleteFunction { name: "G".into() },
            ],
        },
    );
    assert_eq!(code, "unknown_function");
    // A snapshot written before functions and SQL records existed still reads.
    let old: ClusterMetadata =
        serde_json::from_str(r#"{"version":3,"nodes":{},"topics":{},"next_producer_id":0}"#)
            .unwrap();
    assert!(old.functions.is_empty() && old.sql_sources.is_empty() && old.sql_queries.is_empty());
    // And the new state round-trips.
    let json = serde_json::to_string(&m).unwrap();
    let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}

#[test]
fn an_artifact_name_points_at_the_last_upload_and_bad_records_change_nothing() {
    let mut m = ClusterMetadata::default();
    let art = |name: &str, digit: char| ArtifactRecord {
        name: name.into(),
        hash: format!("sha256:{}", digit.to_string().repeat(64)),
        bytes: 10,
    };
    let put = |m: &mut ClusterMetadata, r: ArtifactRecord| {
        m.apply(&MetadataCommand::PutArtifact { record: r })
    };
    assert_eq!(put(&mut m, art("mask.v1", 'a')), Ok(MetadataResponse::Done));
    assert_eq!(put(&mut m, art("mask.v1", 'b')), Ok(MetadataResponse::Done));
    assert_eq!(m.artifacts["mask.v1"], art("mask.v1", 'b'));
    for bad in [
        art("", 'a'),
        art(".hidden", 'a'),
        art("a/b", 'a'),
        art(&"x".repeat(MAX_FUNCTION_NAME + 1), 'a'),
        ArtifactRecord {
            hash: "sha256:ABC".into(),
            ..art("ok", 'a')
        },
    ] {
        let code = refused(&mut m, MetadataCommand::PutArtifact { record: bad });
        assert_eq!(code, "invalid_catalog_object");
    }
    // Bounded: a new name past MAX_ARTIFACTS is refused; replacing one is not.
    for i in 1..MAX_ARTIFACTS {
        put(&mut m, art(&format!("a{i}"), 'c')).unwrap();
    }
    let code = refused(
        &mut m,
        MetadataCommand::PutArtifact {
            record: art("one-more", 'c'),
        },
    );
    assert_eq!(code, "invalid_catalog_object");
    assert_eq!(put(&mut m, art("a1", 'd')), Ok(MetadataResponse::Done));
    // It survives a snapshot, and a snapshot from before artifacts reads as none.
    let json = serde_json::to_string(&m).unwrap();
    let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
    assert_eq!(back.artifacts.len(), MAX_ARTIFACTS);
    let old = serde_json::to_string(&ClusterMetadata::default()).unwrap();
    assert!(!old.contains("artifacts"), "{old}");
    let old: ClusterMetadata = serde_json::from_str(&old).unwrap();
    assert!(old.artifacts.is_empty());
}
