//! Consumer groups over HTTP (read only): `GET /v1/groups` lists the groups with their
//! state, protocol type, member count and coordinator; `GET /v1/groups/{name}` shows one:
//! members (client id, host, decoded assignment) and per topic-partition the committed
//! offset, the log end and the lag. What a group is comes from the Kafka listener's
//! coordinator through [`weir_broker::group::GroupsView`]; this module only asks and answers.
//!
//! On a cluster each node coordinates the groups whose offsets partition it leads, so:
//! - the list is this node's groups plus every other live node's (`GET /v1/groups` asked of
//!   each, concurrently, bounded by [`LIST_QUERY_TIMEOUT`], the caller's credentials passed
//!   on); nodes that did not answer are named in `unanswered` (the list may be missing their
//!   groups);
//! - a group's detail asked of another node is forwarded to its coordinator
//!   ([`forward::group_elsewhere`]), which answers it as its own; the log ends of partitions
//!   the coordinator holds no replica of come from their leaders ([`fill_remote_ends`]).
//!
//! Under `--auth` the list shows only the groups the caller may describe, and a group's
//! detail needs `describe` on the group (Kafka's DescribeGroups and OffsetFetch rule; a
//! `read` ACL on the group covers it) and shows only the partitions of topics the caller may
//! describe.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use weir_broker::auth::{Op, Resource};
use weir_broker::group::{GroupDetail, GroupSummary, GroupViewError};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiPath;
use super::forward;

/// Longest wait for another node's `GET /v1/groups` (cluster mode).
pub const LIST_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Body of `GET /v1/groups`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GroupList {
    pub groups: Vec<GroupSummary>,
    /// Nodes asked for their groups that did not answer (cluster mode; their groups are
    /// missing from `groups`).
    #[serde(default)]
    pub unanswered: Vec<u64>,
}

/// `GET /v1/groups` → `{"groups":[…],"unanswered":[…]}`, sorted by group id.
pub async fn list(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
) -> Result<Json<GroupList>, ApiError> {
    let mut groups = match state.groups.list() {
        Ok(g) => g,
        // No Kafka listener here (or not started yet): other nodes may still answer.
        Err(GroupViewError::NotServed) if state.routing.is_some() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut unanswered = Vec::new();
    for (node, answer) in
        forward::ask_other_nodes::<GroupList>(&state, "/v1/groups", &headers, LIST_QUERY_TIMEOUT)
            .await
    {
        match answer {
            Ok(list) => groups.extend(
                list.groups
                    .into_iter()
                    // Only what that node coordinates (it answered for itself alone).
                    .filter(|g| g.coordinator == node),
            ),
            Err(e) => {
                tracing::debug!(node, error = %e, "no group list");
                unanswered.push(node);
            }
        }
    }
    if let Some(Extension(c)) = &caller {
        groups.retain(|g| c.may(Op::Describe, &Resource::Group(g.group_id.clone())));
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    groups.dedup_by(|a, b| a.group_id == b.group_id);
    Ok(Json(GroupList { groups, unanswered }))
}

/// `GET /v1/groups/{name}` → the group's detail; `404 unknown_group` for a group with
/// neither members nor committed offsets. On a cluster, asked of a node that does not
/// coordinate the group, the request goes to its coordinator.
pub async fn describe(
    State(state): State<AppState>,
    ApiPath(group): ApiPath<String>,
    caller: Option<Extension<Caller>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut detail = match state.groups.describe(&state.broker, &group) {
        Ok(d) => d,
        Err(GroupViewError::NotCoordinator { partition, .. }) => {
            return forward::group_elsewhere(&state, &group, partition, &headers, uri.path()).await;
        }
        Err(e) => return Err(e.into()),
    };
    fill_remote_ends(&state, &headers, &mut detail).await;
    if let Some(Extension(c)) = &caller {
        let before = detail.partitions.len();
        detail
            .partitions
            .retain(|p| c.may(Op::Describe, &Resource::Topic(p.topic.clone())));
        if detail.partitions.len() != before {
            detail.recount_lag();
        }
        for m in &mut detail.members {
            if let Some(a) = &mut m.assignment {
                a.retain(|t| c.may(Op::Describe, &Resource::Topic(t.topic.clone())));
            }
        }
    }
    Ok(Json(detail).into_response())
}

/// Cluster mode: the log ends (high watermarks) of the group's partitions this node holds no
/// replica of, from their leaders (`GET /v1/topics/{topic}` of each leader that leads some,
/// concurrently, bounded by [`LIST_QUERY_TIMEOUT`]); a leader that does not answer leaves
/// its partitions' lag unknown (`null`).
async fn fill_remote_ends(state: &AppState, headers: &HeaderMap, detail: &mut GroupDetail) {
    let Some(routing) = &state.routing else {
        return;
    };
    let me = routing.node();
    // (leader, topic) → the partitions to learn from it.
    let mut wanted: BTreeMap<(u64, String), Vec<i32>> = BTreeMap::new();
    for p in detail
        .partitions
        .iter()
        .filter(|p| p.log_end_offset.is_none())
    {
        let leader = routing
            .routes(&p.topic)
            .and_then(|r| {
                usize::try_from(p.partition)
                    .ok()
                    .and_then(|i| r.into_iter().nth(i))
            })
            .and_then(|r| r.leader.filter(|l| *l != me));
        if let Some(l) = leader {
            wanted
                .entry((l, p.topic.clone()))
                .or_default()
                .push(p.partition);
        }
    }
    if wanted.is_empty() {
        return;
    }
    let asks = wanted
        .keys()
        .map(|(leader, topic)| (*leader, format!("/v1/topics/{topic}")))
        .collect();
    #[derive(Deserialize)]
    struct Described {
        name: String,
        partition_offsets: Vec<Offsets>,
    }
    #[derive(Deserialize)]
    struct Offsets {
        partition: i32,
        end_offset: i64,
    }
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (leader, path, answer) in
        forward::ask_nodes::<Described>(state, asks, headers, LIST_QUERY_TIMEOUT).await
    {
        let d = match answer {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(node = leader, %path, error = %e, "no log ends");
                continue;
            }
        };
        let Some(led) = wanted.get(&(leader, d.name.clone())) else {
            continue;
        };
        // Only the partitions it leads (its other partitions' ends may be behind).
        for o in d
            .partition_offsets
            .into_iter()
            .filter(|o| led.contains(&o.partition))
        {
            ends.insert((d.name.clone(), o.partition), o.end_offset);
        }
    }
    for p in &mut detail.partitions {
        if let Some(end) = ends.get(&(p.topic.clone(), p.partition)) {
            p.set_log_end(Some(*end));
        }
    }
    detail.recount_lag();
}
