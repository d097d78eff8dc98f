//! Users, tokens and ACLs on a cluster (`--auth`): the [`AuthReplicator`] through which a
//! cluster node's [`AuthStore`] sends its changes (a `MetadataCommand::Auth` proposed to the
//! controller, then a wait until this node has applied it), and the follower that keeps the
//! store equal to the applied metadata's records. It owns no records — the metadata's state
//! machine does (`ClusterMetadata::auth`, applied by the same `AuthData::apply` a single
//! node's store runs) — and it does not authenticate or authorize anyone (the listeners do,
//! against the store).
//!
//! # Invariants
//!
//! 1. **A store follows applied metadata only once its node has caught up** with the
//!    controller (control invariant 8): a restarted node's stale log must not bring back a
//!    deleted user or a revoked token, even for a moment. Until then the node serves its file
//!    (the last records it followed).
//! 2. **A cluster's records start from its first node's own**: while the metadata holds no
//!    user, a node imports its local records (users, then tokens and ACLs) — once caught up,
//!    and before its first change. Only into a cluster with no user, so a node that returns
//!    after a user was deleted never brings it back; when two nodes import at once the
//!    second batch is refused as a whole (the users exist) and that node follows the first.
//!    While the metadata holds no user a node keeps its own (it never follows an empty set:
//!    that would lock everyone out).
//! 3. **A change is answered once this node's store shows it** (read-your-writes on the node
//!    that took the request); the other nodes show it when they apply that metadata.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

use super::control::{ProposeError, Proposer};
use super::metadata::{ClusterMetadata, MetadataResponse};
use super::metadata::{MAX_BATCH_COMMANDS, MetadataCommand, MetadataError, MetadataNode};
use crate::auth::{AuthChange, AuthError, AuthOutcome, AuthReplicator, AuthStore};

/// How long a change may take to commit and be applied on this node.
pub const AUTH_CHANGE_WAIT: Duration = Duration::from_secs(15);

/// The replicator of one node's store.
pub struct ClusterAuth {
    proposer: Proposer,
    node: MetadataNode,
    store: Weak<AuthStore>,
    runtime: tokio::runtime::Handle,
}

impl ClusterAuth {
    /// Must be created inside the Tokio runtime the node runs on.
    pub fn new(proposer: Proposer, node: MetadataNode, store: &Arc<AuthStore>) -> ClusterAuth {
        ClusterAuth {
            proposer,
            node,
            store: Arc::downgrade(store),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    async fn replicate_async(&self, change: &AuthChange) -> Result<AuthOutcome, AuthError> {
        let store = self
            .store
            .upgrade()
            .ok_or_else(|| AuthError::ClusterUnavailable("the node is stopping".into()))?;
        let _ = import_if_empty(&self.proposer, &self.node, &store).await;
        let command = MetadataCommand::Auth {
            change: change.clone(),
        };
        let response = tokio::time::timeout(AUTH_CHANGE_WAIT, self.proposer.propose(command))
            .await
            .map_err(|_| {
                AuthError::ClusterUnavailable(format!(
                    "no answer from the controller within {AUTH_CHANGE_WAIT:?}"
                ))
            })?
            .map_err(|e| match e {
                ProposeError::Rejected(MetadataError::AuthRefused(m)) => {
                    AuthError::ClusterRefused(m)
                }
                ProposeError::Rejected(other) => AuthError::ClusterRefused(other.to_string()),
                other => AuthError::ClusterUnavailable(other.to_string()),
            })?;
        let outcome = match response {
            MetadataResponse::AclAdded { acl } => AuthOutcome::AclAdded(acl),
            _ => AuthOutcome::Done,
        };
        let applied = self
            .node
            .wait_for(AUTH_CHANGE_WAIT, |m| m.auth.shows(change, &outcome))
            .await
            .ok_or_else(|| {
                AuthError::ClusterUnavailable(
                    "committed, but not applied on this node in time".into(),
                )
            })?;
        follow(&store, &applied).await;
        Ok(outcome)
    }
}

impl AuthReplicator for ClusterAuth {
    /// Blocking (the store's callers run it off the async threads).
    fn replicate(&self, change: &AuthChange) -> Result<AuthOutcome, AuthError> {
        self.runtime.block_on(self.replicate_async(change))
    }
}

/// Invariant 2: proposes this node's records while the metadata holds no user. Returns
/// whether to try again later (the controller could not be reached); a refusal is final
/// until the metadata changes.
async fn import_if_empty(proposer: &Proposer, node: &MetadataNode, store: &AuthStore) -> bool {
    if !node.current().auth.users.is_empty() {
        return false;
    }
    let local = store.snapshot();
    if local.users.is_empty() {
        return false;
    }
    let changes = local.as_changes();
    let total = changes.len();
    let mut batches = changes
        .into_iter()
        .map(|change| MetadataCommand::Auth { change })
        .collect::<Vec<_>>();
    // Users come first, so the first batch is the one that decides (invariant 2).
    while !batches.is_empty() {
        let rest = batches.split_off(batches.len().min(MAX_BATCH_COMMANDS));
        let batch = MetadataCommand::Batch { commands: batches };
        batches = rest;
        match tokio::time::timeout(AUTH_CHANGE_WAIT, proposer.propose(batch)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e @ ProposeError::Rejected(_))) => {
                tracing::info!(error = %e, "this node's users were not imported (another node's came first?)");
                return false;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "importing this node's users failed; retried later");
                return true;
            }
            Err(_) => {
                tracing::warn!("importing this node's users timed out; retried later");
                return true;
            }
        }
    }
    tracing::info!(
        records = total,
        "imported this node's users, tokens and ACLs into the cluster"
    );
    false
}

/// Makes the store show the applied records (never an empty set of users: invariant 2).
async fn follow(store: &Arc<AuthStore>, meta: &ClusterMetadata) {
    if meta.auth.users.is_empty() {
        return;
    }
    let (store, records) = (Arc::clone(store), meta.auth.clone());
    let done = tokio::task::spawn_blocking(move || store.follow(&records)).await;
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot write this node's copy of the users"),
        Err(e) => tracing::warn!(error = %e, "following the users failed"),
    }
}

/// Keeps `store` equal to the applied metadata's records once `ready` (caught up, invariant
/// 1), importing this node's records first while the cluster has none; until `stop`.
pub async fn run_follower(
    node: MetadataNode,
    proposer: Proposer,
    store: Arc<AuthStore>,
    ready: impl std::future::Future<Output = bool> + Send,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => return,
        ok = ready => if !ok {
            return;
        },
    }
    let mut versions = node.subscribe();
    loop {
        let meta = versions.borrow_and_update().clone();
        let retry = if meta.auth.users.is_empty() {
            import_if_empty(&proposer, &node, &store).await
        } else {
            follow(&store, &meta).await;
            false
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            changed = versions.changed() => if changed.is_err() {
                return;
            },
            () = tokio::time::sleep(Duration::from_secs(1)), if retry => {}
        }
    }
}
