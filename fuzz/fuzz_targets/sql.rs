//! Any bytes as SQL text sent to `POST /v1/sql` or `/v1/query`: the limits on the text, the
//! parser, and the planner and type checker for every statement that has a query or
//! expressions, against a small catalog (a stream and a table), on the SQL thread as the
//! service runs them. Nothing runs or is written. Must never panic or overflow its stack:
//! a statement beyond the limits (`weir_engine::sql::limits`) must be an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_engine::sql::ast::{ColumnDef, SourceKind, Statement};
use weir_engine::sql::catalog::{Catalog, SourceDef};
use weir_engine::sql::expr::Resolver;
use weir_engine::sql::types::SqlType;
use weir_engine::sql::{NoFunctions, limits, parser, plan};

fn source(name: &str, kind: SourceKind, columns: &[(&str, SqlType, bool)]) -> SourceDef {
    SourceDef {
        name: name.into(),
        kind,
        topic: name.to_lowercase(),
        columns: columns
            .iter()
            .map(|(n, ty, key)| ColumnDef {
                name: (*n).into(),
                ty: ty.clone(),
                key: *key,
            })
            .collect(),
        value_format: "JSON".into(),
        timestamp: None,
        partitions: 2,
        window: None,
        query: None,
        sql: String::new(),
    }
}

fn catalog() -> Catalog {
    let mut c = Catalog::in_memory();
    let _ = c.put_source(source(
        "S",
        SourceKind::Stream,
        &[
            ("ID", SqlType::String, true),
            ("A", SqlType::Int, false),
            ("B", SqlType::Boolean, false),
            ("X", SqlType::Double, false),
            ("T", SqlType::Array(Box::new(SqlType::String)), false),
        ],
    ));
    let _ = c.put_source(source(
        "T",
        SourceKind::Table,
        &[("ID", SqlType::String, true), ("N", SqlType::Bigint, false)],
    ));
    c
}

fn plan_all(sql: &str) -> Result<(), weir_engine::sql::SqlError> {
    let catalog = catalog();
    for p in parser::parse(sql)? {
        let select = match &p.statement {
            Statement::Select(s)
            | Statement::CreateAs { select: s, .. }
            | Statement::InsertSelect { select: s, .. } => s,
            Statement::InsertValues { values, .. } => {
                let resolver = Resolver {
                    scope: &[],
                    functions: &NoFunctions,
                };
                for v in values {
                    let _ = resolver.resolve(v);
                }
                continue;
            }
            _ => continue,
        };
        if let Ok(plan) = plan::plan_query("FUZZ", "out", select, &catalog, &NoFunctions) {
            // What a deployment stores and a restart reads back.
            let module = weir_engine::sql::loader::plan_module(&plan);
            let back = weir_engine::sql::loader::module_plan(&module);
            assert!(matches!(back, Some(Ok(ref b)) if *b == plan), "{sql}");
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    // The service's SQL thread (`limits::on_sql_stack`), without its catch of panics: a
    // panic here must reach libFuzzer.
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(limits::SQL_STACK_BYTES)
            .spawn_scoped(s, || {
                let _ = plan_all(sql);
            })
            .expect("thread")
            .join()
            .expect("no panic");
    });
});
