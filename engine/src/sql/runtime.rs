//! A persistent query's task: [`SqlLogic`] runs a [`QueryPlan`] as a [`ProcessorLogic`] over
//! one partition — decode JSON records into rows, join with the table's state, filter,
//! project or aggregate (tumbling, hopping and session windows in event time, with grace
//! periods, late-record counting, EMIT CHANGES or EMIT FINAL), and emit JSON records to the
//! sink topic. Rows that must meet rows of another partition (a join or GROUP BY on a
//! column that is not the record key) go through the query's repartition topic first.
//!
//! State stores of a query task (each with its changelog, like any processor's):
//! `table` (the joined table: key → value bytes), `agg` (group key + window start →
//! accumulators), `expiry` (close time + group key + window start, for closing windows in
//! order) and `meta` (stream time, late-record count).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::aggregate::{Acc, Udafs};
use super::ast::{Emit, WindowKind, WindowSpec};
use super::expr::{EvalContext, Expr, Row, retain_true, truthy};
use super::functions::text;
use super::plan::{AggPlan, Body, QueryPlan, SourceBinding};
use super::types::lookup_field;
use crate::host::{
    InputRecord, Interrupt, OutputRecord, ProcessorError, ProcessorLogic, StoreHandle, TaskHost,
    TimerKind,
};
use crate::udf::{FunctionCatalog, ScalarUdf};

/// Header naming the stage a repartitioned row resumes at.
pub const STAGE_HEADER: &str = "weir.sql.stage";
const STAGE_JOIN: &str = "join";
const STAGE_AGG: &str = "agg";
/// `meta` store keys.
pub const META_STREAM_TIME: &[u8] = b"stream_time";
pub const META_LATE: &[u8] = b"late_records";
/// Separator of multi-column group keys (as ksqlDB's `|+|`).
const KEY_SEPARATOR: &str = "|+|";
/// Most entries read from a store in one range call.
const SCAN_LIMIT: usize = 10_000;

fn host_err(e: crate::host::HostError) -> ProcessorError {
    ProcessorError::Host(e.0)
}

/// A row on its way through the query, with its event time and record key.
#[derive(Debug, Clone)]
struct TRow {
    row: Row,
    time: i64,
    key: Option<Bytes>,
}

/// The text form of a key (single column: its text; several: joined with `|+|`).
pub fn key_text(values: &[Value]) -> String {
    values
        .iter()
        .map(text)
        .collect::<Vec<_>>()
        .join(KEY_SEPARATOR)
}

fn flip(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn unflip(b: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = b.try_into().ok()?;
    Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

/// `agg` store key: group key length, group key, window start.
pub fn state_key(gk: &[u8], start: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(12 + gk.len());
    k.extend_from_slice(&(gk.len() as u32).to_be_bytes());
    k.extend_from_slice(gk);
    k.extend_from_slice(&flip(start));
    k
}

fn group_prefix(gk: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + gk.len());
    k.extend_from_slice(&(gk.len() as u32).to_be_bytes());
    k.extend_from_slice(gk);
    k
}

/// The exclusive upper bound of keys starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn expiry_key(close: i64, state_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + state_key.len());
    k.extend_from_slice(&flip(close));
    k.extend_from_slice(state_key);
    k
}

/// One group's (and window's) aggregate state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupState {
    /// GROUP BY values.
    pub k: Vec<Value>,
    /// Window start and end (0, 0 unwindowed; for sessions the first and last event time).
    pub s: i64,
    pub e: i64,
    pub a: Vec<Acc>,
}

/// When a session whose last record is at `end` closes: no record can join it after.
fn session_close(end: i64, w: &WindowSpec) -> i64 {
    end.saturating_add(w.size_ms).saturating_add(w.grace_ms)
}

/// Windows of a tumbling or hopping spec that contain `ts`: `(start, end)`.
pub fn windows_for(w: &WindowSpec, ts: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let last_start = ts - ts.rem_euclid(w.advance_ms);
    let mut start = last_start;
    while start > ts.saturating_sub(w.size_ms) {
        out.push((start, start.saturating_add(w.size_ms)));
        start = start.saturating_sub(w.advance_ms);
    }
    out.reverse();
    out
}

/// Decodes a JSON record into a row of `source`'s columns plus ROWTIME, and its event time.
/// `None` if the value is not a JSON object (the record is skipped).
fn decode(
    source: &SourceBinding,
    key: Option<&Bytes>,
    value: &[u8],
    timestamp: i64,
) -> Option<(Row, i64)> {
    let parsed: Value = serde_json::from_slice(value).ok()?;
    let obj = parsed.as_object()?;
    let key_text = key.and_then(|k| std::str::from_utf8(k).ok());
    let mut row = Vec::with_capacity(source.columns.len() + 1);
    for c in &source.columns {
        let v = match (c.key, key_text) {
            (true, Some(k)) => c.ty.coerce(&Value::String(k.to_string())),
            _ => lookup_field(obj, &c.name).and_then(|v| c.ty.coerce(v)),
        };
        row.push(v.unwrap_or(Value::Null));
    }
    let time = source
        .timestamp
        .and_then(|i| row.get(i))
        .and_then(Value::as_i64)
        .unwrap_or(timestamp);
    row.push(Value::from(timestamp));
    Some((row, time))
}

fn encode_object(names: impl Iterator<Item = String>, values: Vec<Value>) -> Bytes {
    let obj: serde_json::Map<String, Value> = names.zip(values).collect();
    Bytes::from(serde_json::to_vec(&Value::Object(obj)).unwrap_or_default())
}

struct Stores {
    table: Option<StoreHandle>,
    agg: Option<StoreHandle>,
    expiry: Option<StoreHandle>,
    meta: Option<StoreHandle>,
}

/// One query task's logic.
pub struct SqlLogic {
    plan: Arc<QueryPlan>,
    functions: Arc<dyn FunctionCatalog>,
    /// The task's stop flag: the UDF instances' calls end when it is raised.
    stop: Interrupt,
    udfs: HashMap<String, Box<dyn ScalarUdf>>,
    udafs: Udafs,
    stores: Stores,
    repartition_topic: String,
    /// The aggregation's stream time and late count (loaded from `meta` on first use).
    agg_time: Option<(i64, u64)>,
    agg_time_dirty: bool,
}

impl SqlLogic {
    pub fn new(
        plan: Arc<QueryPlan>,
        functions: Arc<dyn FunctionCatalog>,
        stop: Interrupt,
    ) -> SqlLogic {
        let repartition_topic = format!("{}.repartition", plan.id);
        SqlLogic {
            plan,
            functions,
            stop,
            udfs: HashMap::new(),
            udafs: Udafs::new(),
            stores: Stores {
                table: None,
                agg: None,
                expiry: None,
                meta: None,
            },
            repartition_topic,
            agg_time: None,
            agg_time_dirty: false,
        }
    }

    fn eval(&mut self, e: &Expr, rows: &[Row]) -> Result<Vec<Value>, ProcessorError> {
        let mut cx = EvalContext {
            functions: &*self.functions,
            stop: Some(&self.stop),
            udfs: &mut self.udfs,
        };
        e.eval(rows, &mut cx)
    }

    fn eval_all(&mut self, es: &[Expr], rows: &[Row]) -> Result<Vec<Vec<Value>>, ProcessorError> {
        // Column-major results turned into one Vec per row.
        let mut cols = Vec::with_capacity(es.len());
        for e in es {
            cols.push(self.eval(e, rows)?);
        }
        Ok((0..rows.len())
            .map(|i| cols.iter().map(|c| c[i].clone()).collect())
            .collect())
    }

    /// Sends rows to the repartition topic, keyed by `key_exprs`, to resume at `stage`.
    fn repartition(
        &mut self,
        host: &mut dyn TaskHost,
        rows: Vec<TRow>,
        key_exprs: &[Expr],
        stage: &str,
    ) -> Result<(), ProcessorError> {
        let plain: Vec<Row> = rows.iter().map(|r| r.row.clone()).collect();
        let keys = self.eval_all(key_exprs, &plain)?;
        for (r, k) in rows.into_iter().zip(keys) {
            let value = serde_json::to_vec(&(r.time, &r.row)).unwrap_or_default();
            host.emit(
                "repartition",
                OutputRecord {
                    key: Some(Bytes::from(key_text(&k))),
                    value: Some(Bytes::from(value)),
                    headers: vec![(STAGE_HEADER.into(), Some(Bytes::from(stage.to_string())))],
                    timestamp: Some(r.time),
                },
            )
            .map_err(host_err)?;
        }
        Ok(())
    }

    fn after_source(
        &mut self,
        host: &mut dyn TaskHost,
        rows: Vec<TRow>,
    ) -> Result<(), ProcessorError> {
        if rows.is_empty() {
            return Ok(());
        }
        let plan = self.plan.clone();
        match &plan.join {
            Some(j) if j.repartition => {
                self.repartition(host, rows, std::slice::from_ref(&j.stream_key), STAGE_JOIN)
            }
            Some(_) => {
                let joined = self.join(host, rows)?;
                self.after_join(host, joined)
            }
            None => self.after_join(host, rows),
        }
    }

    fn join(
        &mut self,
        host: &mut dyn TaskHost,
        rows: Vec<TRow>,
    ) -> Result<Vec<TRow>, ProcessorError> {
        let plan = self.plan.clone();
        let Some(j) = &plan.join else {
            return Ok(rows);
        };
        let table = self
            .stores
            .table
            .ok_or_else(|| ProcessorError::Host("table store not open".into()))?;
        let plain: Vec<Row> = rows.iter().map(|r| r.row.clone()).collect();
        let keys = self.eval(&j.stream_key, &plain)?;
        let mut out = Vec::with_capacity(rows.len());
        for (mut r, k) in rows.into_iter().zip(keys) {
            let found = if k.is_null() {
                None
            } else {
                let kt = text(&k);
                host.get(table, kt.as_bytes())
                    .map_err(host_err)?
                    .and_then(|v| {
                        decode(&j.table, Some(&Bytes::from(kt.clone())), &v, 0).map(|(row, _)| row)
                    })
            };
            match found {
                Some(mut trow) => {
                    trow.pop(); // the table's ROWTIME is not part of the scope
                    r.row.extend(trow);
                }
                None if j.left => {
                    r.row
                        .extend(std::iter::repeat_n(Value::Null, j.table.columns.len()));
                }
                None => continue,
            }
            out.push(r);
        }
        Ok(out)
    }

    fn after_join(
        &mut self,
        host: &mut dyn TaskHost,
        rows: Vec<TRow>,
    ) -> Result<(), ProcessorError> {
        let plan = self.plan.clone();
        let rows = match &plan.filter {
            Some(f) => {
                let plain: Vec<Row> = rows.iter().map(|r| r.row.clone()).collect();
                let keep = self.eval(f, &plain)?;
                retain_true(rows, keep)
            }
            None => rows,
        };
        if rows.is_empty() {
            return Ok(());
        }
        match &plan.body {
            Body::Project(exprs) => {
                let plain: Vec<Row> = rows.iter().map(|r| r.row.clone()).collect();
                let out = self.eval_all(exprs, &plain)?;
                for (r, values) in rows.into_iter().zip(out) {
                    let value = encode_object(plan.output.iter().map(|c| c.name.clone()), values);
                    host.emit(
                        "",
                        OutputRecord {
                            key: r.key,
                            value: Some(value),
                            headers: Vec::new(),
                            timestamp: Some(r.time),
                        },
                    )
                    .map_err(host_err)?;
                }
                Ok(())
            }
            Body::Aggregate(a) if a.repartition => {
                self.repartition(host, rows, &a.group, STAGE_AGG)
            }
            Body::Aggregate(a) => self.aggregate(host, a, rows),
        }
    }

    fn load_agg_time(&mut self, host: &mut dyn TaskHost) -> Result<(i64, u64), ProcessorError> {
        if let Some(t) = self.agg_time {
            return Ok(t);
        }
        let meta = self.meta()?;
        let read = |host: &mut dyn TaskHost, k: &[u8]| -> Result<Option<i64>, ProcessorError> {
            Ok(host
                .get(meta, k)
                .map_err(host_err)?
                .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()))
        };
        let t = (
            read(host, META_STREAM_TIME)?.unwrap_or(i64::MIN),
            read(host, META_LATE)?.unwrap_or(0) as u64,
        );
        self.agg_time = Some(t);
        Ok(t)
    }

    fn meta(&self) -> Result<StoreHandle, ProcessorError> {
        self.stores
            .meta
            .ok_or_else(|| ProcessorError::Host("meta store not open".into()))
    }

    fn agg_stores(&self) -> Result<(StoreHandle, StoreHandle), ProcessorError> {
        match (self.stores.agg, self.stores.expiry) {
            (Some(a), Some(e)) => Ok((a, e)),
            _ => Err(ProcessorError::Host("aggregate stores not open".into())),
        }
    }

    fn load_state(
        &self,
        host: &mut dyn TaskHost,
        key: &[u8],
    ) -> Result<Option<GroupState>, ProcessorError> {
        let (agg, _) = self.agg_stores()?;
        match host.get(agg, key).map_err(host_err)? {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| ProcessorError::Host(format!("corrupt aggregate state: {e}"))),
            None => Ok(None),
        }
    }

    fn store_state(
        &self,
        host: &mut dyn TaskHost,
        key: &[u8],
        st: &GroupState,
    ) -> Result<(), ProcessorError> {
        let (agg, _) = self.agg_stores()?;
        let bytes = serde_json::to_vec(st).map_err(|e| ProcessorError::Host(e.to_string()))?;
        host.put(agg, key, &bytes).map_err(host_err)
    }

    fn new_state(
        &mut self,
        a: &AggPlan,
        k: Vec<Value>,
        s: i64,
        e: i64,
    ) -> Result<GroupState, ProcessorError> {
        let mut accs = Vec::with_capacity(a.aggs.len());
        for c in &a.aggs {
            accs.push(c.init(&mut self.udafs)?);
        }
        Ok(GroupState { k, s, e, a: accs })
    }

    /// The output row (SELECT list values) of a stored group, for pull queries; `None` when
    /// HAVING rejects it.
    pub fn project_state(
        &mut self,
        a: &AggPlan,
        st: &GroupState,
    ) -> Result<Option<Vec<Value>>, ProcessorError> {
        let (_, aggregates) = self.plan.udfs();
        for name in aggregates {
            if !self.udafs.contains_key(&name) {
                let inst = self.functions.aggregate(&name, Some(&self.stop))?;
                self.udafs.insert(name, inst);
            }
        }
        self.result_row(a, st)
    }

    /// The output row of a group: `None` when HAVING rejects it.
    fn result_row(
        &mut self,
        a: &AggPlan,
        st: &GroupState,
    ) -> Result<Option<Vec<Value>>, ProcessorError> {
        let mut row: Row = st.k.clone();
        let windowed = a.window.is_some();
        row.push(if windowed {
            Value::from(st.s)
        } else {
            Value::Null
        });
        row.push(if windowed {
            Value::from(st.e)
        } else {
            Value::Null
        });
        for (c, acc) in a.aggs.iter().zip(&st.a) {
            row.push(c.result(acc, &mut self.udafs)?);
        }
        let rows = [row];
        if let Some(h) = &a.having
            && !truthy(&self.eval(h, &rows)?[0])
        {
            return Ok(None);
        }
        Ok(self.eval_all(&a.project, &rows)?.pop())
    }

    fn emit_group(
        &mut self,
        host: &mut dyn TaskHost,
        a: &AggPlan,
        st: &GroupState,
        time: i64,
    ) -> Result<(), ProcessorError> {
        if let Some(values) = self.result_row(a, st)? {
            let plan = self.plan.clone();
            let value = encode_object(plan.output.iter().map(|c| c.name.clone()), values);
            host.emit(
                "",
                OutputRecord {
                    key: Some(Bytes::from(key_text(&st.k))),
                    value: Some(value),
                    headers: Vec::new(),
                    timestamp: Some(time),
                },
            )
            .map_err(host_err)?;
        }
        Ok(())
    }

    fn aggregate(
        &mut self,
        host: &mut dyn TaskHost,
        a: &AggPlan,
        rows: Vec<TRow>,
    ) -> Result<(), ProcessorError> {
        let plain: Vec<Row> = rows.iter().map(|r| r.row.clone()).collect();
        let groups = self.eval_all(&a.group, &plain)?;
        let mut args: Vec<Vec<Vec<Value>>> = Vec::with_capacity(a.aggs.len());
        for c in &a.aggs {
            args.push(self.eval_all(&c.args, &plain)?);
        }
        let (mut stream_time, mut late) = self.load_agg_time(host)?;
        let (_, expiry) = self.agg_stores()?;
        // Groups touched by this batch, updated in memory and written (and, for EMIT
        // CHANGES, emitted) once each at the end: one RocksDB write and one output record
        // per group and batch, as ksqlDB's record cache does.
        // (state, latest event time, rows of this batch to fold in).
        let mut touched: HashMap<Vec<u8>, (GroupState, i64, Vec<usize>)> = HashMap::new();
        let mut order: Vec<Vec<u8>> = Vec::new();
        for (i, (r, k)) in rows.iter().zip(groups).enumerate() {
            let row_args: Vec<&Vec<Value>> = args.iter().map(|per_call| &per_call[i]).collect();
            stream_time = stream_time.max(r.time);
            let gk = key_text(&k).into_bytes();
            let windows: Vec<(i64, i64)> = match a.window {
                None => vec![(0, 0)],
                Some(w) if w.kind != WindowKind::Session => windows_for(&w, r.time),
                Some(w) => {
                    if !self.session(host, a, &w, k, &gk, r.time, stream_time, &row_args)? {
                        late += 1;
                    }
                    continue;
                }
            };
            let mut accepted = false;
            for (start, end) in windows {
                if let Some(w) = a.window
                    && end.saturating_add(w.grace_ms) <= stream_time
                {
                    continue; // this window has closed
                }
                accepted = true;
                let key = state_key(&gk, start);
                if !touched.contains_key(&key) {
                    let st = match self.load_state(host, &key)? {
                        Some(s) => s,
                        None => {
                            if let Some(w) = a.window {
                                let close = end.saturating_add(w.grace_ms);
                                host.put(expiry, &expiry_key(close, &key), b"")
                                    .map_err(host_err)?;
                            }
                            self.new_state(a, k.clone(), start, end)?
                        }
                    };
                    touched.insert(key.clone(), (st, r.time, Vec::new()));
                    order.push(key.clone());
                }
                let Some((_, time, pending)) = touched.get_mut(&key) else {
                    continue;
                };
                *time = (*time).max(r.time);
                pending.push(i);
            }
            if !accepted {
                late += 1;
            }
        }
        for key in order {
            let Some((mut st, time, pending)) = touched.remove(&key) else {
                continue;
            };
            // One fold per aggregate and group: an aggregate UDF gets all of the group's rows
            // of this batch in one call.
            for (j, (c, acc)) in a.aggs.iter().zip(st.a.iter_mut()).enumerate() {
                let rows: Vec<&[Value]> = pending.iter().map(|&i| args[j][i].as_slice()).collect();
                c.add_many(acc, &rows, &mut self.udafs)?;
            }
            self.store_state(host, &key, &st)?;
            if a.emit == Emit::Changes {
                self.emit_group(host, a, &st, time)?;
            }
        }
        if self.agg_time != Some((stream_time, late)) {
            self.agg_time = Some((stream_time, late));
            self.agg_time_dirty = true;
        }
        self.close_windows(host, a, stream_time)?;
        self.save_agg_time(host)
    }

    /// Adds a record to its key's session, merging every session it bridges. Returns
    /// `false` (record late) when it joins no open session and a session of its own would
    /// already be closed.
    #[allow(clippy::too_many_arguments)]
    fn session(
        &mut self,
        host: &mut dyn TaskHost,
        a: &AggPlan,
        w: &WindowSpec,
        k: Vec<Value>,
        gk: &[u8],
        ts: i64,
        stream_time: i64,
        args: &[&Vec<Value>],
    ) -> Result<bool, ProcessorError> {
        let (agg, expiry) = self.agg_stores()?;
        let gap = w.size_ms;
        let prefix = group_prefix(gk);
        let end = prefix_end(&prefix);
        let existing = host
            .range(agg, Some(&prefix), end.as_deref(), SCAN_LIMIT)
            .map_err(host_err)?;
        let mut merged: Option<GroupState> = None;
        let mut sessions: Vec<GroupState> = Vec::new();
        for (key, v) in existing {
            let st: GroupState = serde_json::from_slice(&v)
                .map_err(|e| ProcessorError::Host(format!("corrupt session state: {e}")))?;
            if st.s.saturating_sub(gap) <= ts && ts <= st.e.saturating_add(gap) {
                host.delete(agg, &key).map_err(host_err)?;
                host.delete(expiry, &expiry_key(session_close(st.e, w), &key))
                    .map_err(host_err)?;
                sessions.push(st);
            }
        }
        if sessions.is_empty() && ts.saturating_add(gap).saturating_add(w.grace_ms) <= stream_time {
            return Ok(false);
        }
        sessions.sort_by_key(|s| s.s);
        for st in sessions {
            merged = Some(match merged {
                None => st,
                Some(m) => {
                    let mut accs = Vec::with_capacity(a.aggs.len());
                    for (c, (x, y)) in a.aggs.iter().zip(m.a.into_iter().zip(st.a)) {
                        accs.push(c.merge(x, y, &mut self.udafs)?);
                    }
                    GroupState {
                        k: m.k,
                        s: m.s.min(st.s),
                        e: m.e.max(st.e),
                        a: accs,
                    }
                }
            });
        }
        let mut st = match merged {
            Some(m) => m,
            None => self.new_state(a, k, ts, ts)?,
        };
        st.s = st.s.min(ts);
        st.e = st.e.max(ts);
        for (c, (acc, v)) in a.aggs.iter().zip(st.a.iter_mut().zip(args)) {
            c.add(acc, v, &mut self.udafs)?;
        }
        let key = state_key(gk, st.s);
        self.store_state(host, &key, &st)?;
        host.put(expiry, &expiry_key(session_close(st.e, w), &key), b"")
            .map_err(host_err)?;
        if a.emit == Emit::Changes {
            self.emit_group(host, a, &st, ts)?;
        }
        Ok(true)
    }

    /// Closes every window whose close time (end + grace) stream time has reached: EMIT
    /// FINAL emits its one result, and its state is dropped.
    fn close_windows(
        &mut self,
        host: &mut dyn TaskHost,
        a: &AggPlan,
        stream_time: i64,
    ) -> Result<(), ProcessorError> {
        if a.window.is_none() || stream_time == i64::MIN {
            return Ok(());
        }
        let (agg, expiry) = self.agg_stores()?;
        let bound = flip(stream_time.saturating_add(1)).to_vec();
        loop {
            let due = host
                .range(expiry, None, Some(&bound), SCAN_LIMIT)
                .map_err(host_err)?;
            let n = due.len();
            for (ek, _) in due {
                let Some(skey) = ek.get(8..) else {
                    host.delete(expiry, &ek).map_err(host_err)?;
                    continue;
                };
                if let Some(st) = self.load_state(host, skey)? {
                    if a.emit == Emit::Final {
                        let time = unflip(&ek[..8]).unwrap_or(stream_time);
                        self.emit_group(host, a, &st, st.e.min(time))?;
                    }
                    host.delete(agg, skey).map_err(host_err)?;
                }
                host.delete(expiry, &ek).map_err(host_err)?;
            }
            if n < SCAN_LIMIT {
                return Ok(());
            }
        }
    }

    fn save_agg_time(&mut self, host: &mut dyn TaskHost) -> Result<(), ProcessorError> {
        if !self.agg_time_dirty {
            return Ok(());
        }
        let Some((t, late)) = self.agg_time else {
            return Ok(());
        };
        let meta = self.meta()?;
        host.put(meta, META_STREAM_TIME, t.to_string().as_bytes())
            .map_err(host_err)?;
        host.put(meta, META_LATE, late.to_string().as_bytes())
            .map_err(host_err)?;
        self.agg_time_dirty = false;
        Ok(())
    }

    fn upsert_table(
        &mut self,
        host: &mut dyn TaskHost,
        r: &InputRecord,
    ) -> Result<(), ProcessorError> {
        let plan = self.plan.clone();
        let (Some(j), Some(table)) = (&plan.join, self.stores.table) else {
            return Ok(());
        };
        let key = match &r.key {
            Some(k) => k.clone(),
            None => {
                // No record key: take the PRIMARY KEY column from the value.
                let Some(v) = &r.value else {
                    return Ok(());
                };
                let Some((row, _)) = decode(&j.table, None, v, 0) else {
                    return Ok(());
                };
                match j
                    .table
                    .columns
                    .iter()
                    .position(|c| c.key)
                    .and_then(|i| row.get(i))
                {
                    Some(k) if !k.is_null() => Bytes::from(text(k)),
                    _ => return Ok(()),
                }
            }
        };
        match &r.value {
            Some(v) => host.put(table, &key, v).map_err(host_err),
            None => host.delete(table, &key).map_err(host_err),
        }
    }

    fn from_repartition(r: &InputRecord) -> Option<(String, TRow)> {
        let stage = r
            .headers
            .iter()
            .find(|(n, _)| n == STAGE_HEADER)
            .and_then(|(_, v)| v.as_ref())
            .and_then(|v| std::str::from_utf8(v).ok())?
            .to_string();
        let (time, row): (i64, Row) = serde_json::from_slice(r.value.as_ref()?).ok()?;
        Some((
            stage,
            TRow {
                row,
                time,
                key: r.key.clone(),
            },
        ))
    }

    /// Runs one run of same-kind rows through the stage they are at.
    fn run_stage(
        &mut self,
        host: &mut dyn TaskHost,
        stage: &str,
        rows: Vec<TRow>,
    ) -> Result<(), ProcessorError> {
        match stage {
            "" => self.after_source(host, rows),
            STAGE_JOIN => {
                let joined = self.join(host, rows)?;
                self.after_join(host, joined)
            }
            STAGE_AGG => {
                let plan = self.plan.clone();
                match &plan.body {
                    Body::Aggregate(a) => self.aggregate(host, a, rows),
                    Body::Project(_) => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

impl ProcessorLogic for SqlLogic {
    fn init(
        &mut self,
        host: &mut dyn TaskHost,
        _config: &[(String, String)],
    ) -> Result<(), ProcessorError> {
        let open = |host: &mut dyn TaskHost, name: &str| host.open_store(name).map_err(host_err);
        if self.plan.join.is_some() {
            self.stores.table = Some(open(host, "table")?);
        }
        if let Body::Aggregate(_) = &self.plan.body {
            self.stores.agg = Some(open(host, "agg")?);
            self.stores.expiry = Some(open(host, "expiry")?);
            self.stores.meta = Some(open(host, "meta")?);
        }
        let (_, aggregates) = self.plan.udfs();
        for name in aggregates {
            let inst = self.functions.aggregate(&name, Some(&self.stop))?;
            self.udafs.insert(name, inst);
        }
        self.agg_time = None;
        Ok(())
    }

    fn process(
        &mut self,
        host: &mut dyn TaskHost,
        batch: &[InputRecord],
    ) -> Result<(), ProcessorError> {
        let plan = self.plan.clone();
        let table_topic = plan.join.as_ref().map(|j| j.table.topic.as_str());
        let mut run: Vec<TRow> = Vec::new();
        let mut run_stage = String::new();
        for r in batch {
            if *r.topic == *self.repartition_topic {
                let Some((stage, row)) = Self::from_repartition(r) else {
                    tracing::warn!(query = %plan.id, offset = r.offset, "unreadable repartitioned row skipped");
                    continue;
                };
                if stage != run_stage && !run.is_empty() {
                    self.run_stage(host, &run_stage, std::mem::take(&mut run))?;
                }
                run_stage = stage;
                run.push(row);
            } else if Some(&*r.topic) == table_topic {
                if !run.is_empty() {
                    self.run_stage(host, &run_stage, std::mem::take(&mut run))?;
                }
                self.upsert_table(host, r)?;
            } else if *r.topic == *plan.source.topic {
                let Some(v) = &r.value else {
                    continue; // a tombstone carries no row
                };
                let Some((row, time)) = decode(&plan.source, r.key.as_ref(), v, r.timestamp) else {
                    tracing::warn!(query = %plan.id, topic = %r.topic, partition = r.partition,
                        offset = r.offset, "record is not a JSON object; skipped");
                    continue;
                };
                if !run_stage.is_empty() && !run.is_empty() {
                    self.run_stage(host, &run_stage, std::mem::take(&mut run))?;
                }
                run_stage.clear();
                run.push(TRow {
                    row,
                    time,
                    key: r.key.clone(),
                });
            }
        }
        if !run.is_empty() {
            self.run_stage(host, &run_stage, run)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _host: &mut dyn TaskHost,
        _kind: TimerKind,
        _time: i64,
    ) -> Result<(), ProcessorError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hopping_windows_cover_the_record() {
        let w = WindowSpec {
            kind: WindowKind::Hopping,
            size_ms: 10,
            advance_ms: 5,
            grace_ms: 0,
        };
        assert_eq!(windows_for(&w, 12), vec![(5, 15), (10, 20)]);
        assert_eq!(windows_for(&w, 10), vec![(5, 15), (10, 20)]);
        let t = WindowSpec {
            kind: WindowKind::Tumbling,
            size_ms: 10,
            advance_ms: 10,
            grace_ms: 0,
        };
        assert_eq!(windows_for(&t, -1), vec![(-10, 0)]);
        assert_eq!(windows_for(&t, 0), vec![(0, 10)]);
    }

    #[test]
    fn keys_sort_by_time() {
        assert!(flip(-5) < flip(3));
        assert_eq!(unflip(&flip(-5)), Some(-5));
        assert!(expiry_key(10, b"x") < expiry_key(11, b"a"));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
    }
}
