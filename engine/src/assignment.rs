//! Which of a processor's tasks this node runs: every task on a single node; on a cluster,
//! the tasks the cluster's placement assigned to this node, each under its assignment epoch
//! (the epoch the cluster bumped when it gave the task to this node; it is what fences an
//! older owner), and the tasks of other nodes it keeps standbys of.
//!
//! It owns only that view; it decides nothing (the cluster's controller assigns) and starts
//! nothing (the [`crate::Engine`] starts and revokes tasks as the view changes).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Tasks assigned to this node: processor → partition → assignment epoch.
pub type TaskAssignments = BTreeMap<String, BTreeMap<i32, u64>>;

/// Tasks of other nodes this node keeps standbys of: processor → partitions.
pub type StandbyAssignments = BTreeMap<String, BTreeSet<i32>>;

/// This node's share of every processor's tasks.
#[derive(Debug)]
pub struct Assignment {
    /// `None`: every task (a single node).
    assigned: Option<Mutex<TaskAssignments>>,
    /// Cluster mode: the standbys this node keeps.
    standbys: Mutex<StandbyAssignments>,
    /// Cluster mode: processors deployed here before the node joined a cluster, which keep
    /// running every task here (their topics are this node's).
    local: Mutex<BTreeSet<String>>,
}

impl Assignment {
    /// A single node: it runs every task.
    pub fn all() -> Assignment {
        Assignment {
            assigned: None,
            standbys: Mutex::new(StandbyAssignments::new()),
            local: Mutex::new(BTreeSet::new()),
        }
    }

    /// A cluster node: it runs only what [`Assignment::replace`] gives it (nothing yet).
    pub fn assigned() -> Assignment {
        Assignment {
            assigned: Some(Mutex::new(TaskAssignments::new())),
            standbys: Mutex::new(StandbyAssignments::new()),
            local: Mutex::new(BTreeSet::new()),
        }
    }

    /// Cluster mode: `name` runs every task on this node, whatever the cluster assigns.
    pub fn run_locally(&self, name: &str) {
        lock(&self.local).insert(name.to_string());
    }

    fn is_local(&self, name: &str) -> bool {
        lock(&self.local).contains(name)
    }

    /// Whether tasks are assigned by the cluster.
    pub fn is_assigned(&self) -> bool {
        self.assigned.is_some()
    }

    /// The partitions of `name` (out of `partitions`) this node runs, in order.
    pub fn owned(&self, name: &str, partitions: i32) -> Vec<i32> {
        match &self.assigned {
            None => (0..partitions).collect(),
            Some(_) if self.is_local(name) => (0..partitions).collect(),
            Some(m) => lock(m)
                .get(name)
                .map(|ps| {
                    ps.keys()
                        .copied()
                        .filter(|p| (0..partitions).contains(p))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether this node runs task `partition` of `name`.
    pub fn owns(&self, name: &str, partition: i32) -> bool {
        match &self.assigned {
            None => true,
            Some(_) if self.is_local(name) => true,
            Some(m) => lock(m)
                .get(name)
                .is_some_and(|ps| ps.contains_key(&partition)),
        }
    }

    /// The assignment epoch of a task this node runs on a cluster (`None` on a single node
    /// or for a task it does not run).
    pub fn epoch(&self, name: &str, partition: i32) -> Option<u64> {
        let m = self.assigned.as_ref()?;
        lock(m).get(name)?.get(&partition).copied()
    }

    /// The partitions of `name` this node keeps standbys of (none on a single node, and
    /// none of a processor that runs every task here).
    pub fn standbys(&self, name: &str) -> BTreeSet<i32> {
        if self.assigned.is_none() || self.is_local(name) {
            return BTreeSet::new();
        }
        lock(&self.standbys).get(name).cloned().unwrap_or_default()
    }

    /// Replaces the standbys this node keeps; returns the previous set (empty on a single
    /// node, where nothing changes).
    pub fn replace_standbys(&self, new: StandbyAssignments) -> StandbyAssignments {
        match &self.assigned {
            None => StandbyAssignments::new(),
            Some(_) => std::mem::replace(&mut *lock(&self.standbys), new),
        }
    }

    /// Replaces the cluster's assignment; returns the previous one (empty on a single node,
    /// where nothing changes).
    pub fn replace(&self, new: TaskAssignments) -> TaskAssignments {
        match &self.assigned {
            None => TaskAssignments::new(),
            Some(m) => std::mem::replace(&mut *lock(m), new),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_owns_every_task_and_a_cluster_node_what_it_was_given() {
        let all = Assignment::all();
        assert_eq!(all.owned("wc", 3), vec![0, 1, 2]);
        assert!(all.owns("wc", 7));
        assert_eq!(all.epoch("wc", 0), None);
        assert!(all.replace(TaskAssignments::new()).is_empty());

        let node = Assignment::assigned();
        assert!(node.owned("wc", 3).is_empty());
        let mut a = TaskAssignments::new();
        a.insert("wc".into(), BTreeMap::from([(0, 4), (2, 1), (9, 1)]));
        assert!(node.replace(a.clone()).is_empty());
        // A partition beyond the processor's count is never run.
        assert_eq!(node.owned("wc", 3), vec![0, 2]);
        assert!(node.owns("wc", 2) && !node.owns("wc", 1) && !node.owns("other", 0));
        assert_eq!((node.epoch("wc", 0), node.epoch("wc", 1)), (Some(4), None));
        assert_eq!(node.replace(TaskAssignments::new()), a);
    }
}
