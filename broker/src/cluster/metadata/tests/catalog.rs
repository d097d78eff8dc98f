//! The engine's catalog in the state machine: processors created, redeployed (compare and
//! set on the version), paused and deleted; task assignments under epochs; every refusal a
//! typed error that changes nothing; old snapshots still read.

use super::super::*;
use super::state::{register, with_nodes};
use crate::cluster::NodeId;

pub(super) fn record(name: &str, partitions: i32) -> ProcessorRecord {
    ProcessorRecord {
        name: name.into(),
        version: 0,
        partitions,
        inputs: vec!["in".into()],
        state_topics: vec![format!("{name}.counts.changelog")],
        standby_replicas: 1,
        acceptable_recovery_lag: DEFAULT_ACCEPTABLE_RECOVERY_LAG,
        task_footprint: TaskFootprint::default(),
        paused: false,
        spec: serde_json::json!({"v": 1, "config": {"k": "v"}}),
        component: Some("sha256:00ff".into()),
    }
}

fn upsert(
    m: &mut ClusterMetadata,
    record: &ProcessorRecord,
    expected_version: Option<u64>,
) -> Result<MetadataResponse, MetadataError> {
    m.apply(&MetadataCommand::UpsertProcessor {
        record: record.clone(),
        expected_version,
    })
}

/// Applies `cmd` and checks that a refusal changed nothing; returns the refusal's code.
fn refused(m: &mut ClusterMetadata, cmd: MetadataCommand) -> &'static str {
    let before = m.clone();
    let e = m.apply(&cmd).expect_err("not refused");
    assert_eq!(*m, before, "a refusal changed the state: {e}");
    e.code()
}

/// What every owner's engine does with a graceful move: it commits, stops the task and
/// releases it (`ReleaseTask`), so the move completes.
pub(super) fn release_all(m: &mut ClusterMetadata) {
    let pending: Vec<MetadataCommand> = m
        .all_tasks()
        .filter(|(_, _, t)| t.moving_to.is_some())
        .filter_map(|(p, i, t)| {
            Some(MetadataCommand::ReleaseTask {
                processor: p.to_string(),
                partition: i,
                epoch: t.epoch,
                node: t.owner?,
            })
        })
        .collect();
    for c in pending {
        m.apply(&c).unwrap();
    }
}

/// Applies an assignment and lets the owners release what it moves gracefully.
fn moved(m: &mut ClusterMetadata, cmd: MetadataCommand) -> Result<MetadataResponse, MetadataError> {
    let r = m.apply(&cmd);
    release_all(m);
    r
}

fn assign(processor: &str, moves: Vec<TaskMove>) -> MetadataCommand {
    MetadataCommand::AssignTasks {
        processor: processor.into(),
        version: None,
        assignments: moves,
    }
}

fn mv(partition: i32, epoch: u64, owner: NodeId, standbys: Vec<NodeId>) -> TaskMove {
    TaskMove {
        partition,
        epoch,
        owner,
        standbys,
        warmups: Vec::new(),
        force: false,
    }
}

#[test]
fn a_processor_is_created_once_and_redeployed_only_at_its_current_version() {
    let mut m = with_nodes(3);
    let r = record("wc", 4);
    assert_eq!(
        upsert(&mut m, &r, None).unwrap(),
        MetadataResponse::Processor { version: 1 }
    );
    assert_eq!(m.processors["wc"].version, 1);
    assert_eq!(m.processors["wc"].spec, r.spec, "the spec is kept as given");
    let tasks = &m.tasks["wc"];
    assert_eq!(tasks.len(), 4);
    assert!(tasks.iter().all(|t| t.owner.is_none() && t.epoch == 0));

    let create_again = MetadataCommand::UpsertProcessor {
        record: r.clone(),
        expected_version: None,
    };
    assert_eq!(refused(&mut m, create_again), "processor_exists");
    let unknown = MetadataCommand::UpsertProcessor {
        record: record("other", 4),
        expected_version: Some(1),
    };
    assert_eq!(refused(&mut m, unknown), "unknown_processor");

    let mut v2 = r.clone();
    v2.spec = serde_json::json!({"v": 1, "config": {"k": "w"}});
    v2.version = 77; // ignored: the state machine sets it
    assert_eq!(
        upsert(&mut m, &v2, Some(1)).unwrap(),
        MetadataResponse::Processor { version: 2 }
    );
    assert_eq!(m.processors["wc"].version, 2);
    assert_eq!(m.processors["wc"].spec, v2.spec);
    let stale = MetadataCommand::UpsertProcessor {
        record: v2.clone(),
        expected_version: Some(1),
    };
    assert_eq!(refused(&mut m, stale), "stale_processor_version");
    let mut wider = v2.clone();
    wider.partitions = 8;
    let resized = MetadataCommand::UpsertProcessor {
        record: wider,
        expected_version: Some(2),
    };
    assert_eq!(refused(&mut m, resized), "partition_count_changed");
}

#[test]
fn pause_keeps_the_version_and_a_redeploy_keeps_the_pause() {
    let mut m = with_nodes(1);
    upsert(&mut m, &record("p", 2), None).unwrap();
    m.apply(&MetadataCommand::SetProcessorPaused {
        name: "p".into(),
        paused: true,
    })
    .unwrap();
    assert!(m.processors["p"].paused);
    assert_eq!(m.processors["p"].version, 1);
    upsert(&mut m, &record("p", 2), Some(1)).unwrap();
    assert!(m.processors["p"].paused, "a redeploy does not resume");
    let unknown = MetadataCommand::SetProcessorPaused {
        name: "nope".into(),
        paused: false,
    };
    assert_eq!(refused(&mut m, unknown), "unknown_processor");
}

#[test]
fn delete_removes_the_processor_and_its_tasks() {
    let mut m = with_nodes(1);
    upsert(&mut m, &record("p", 2), None).unwrap();
    m.apply(&MetadataCommand::DeleteProcessor { name: "p".into() })
        .unwrap();
    assert!(m.processors.is_empty());
    assert!(m.tasks.is_empty());
    let again = MetadataCommand::DeleteProcessor { name: "p".into() };
    assert_eq!(refused(&mut m, again), "unknown_processor");
}

#[test]
fn records_are_bounded() {
    let mut m = with_nodes(1);
    let cases: Vec<(ProcessorRecord, &str)> = vec![
        (record("", 1), "invalid_processor"),
        (
            record(&"x".repeat(MAX_PROCESSOR_NAME + 1), 1),
            "invalid_processor",
        ),
        (record("a.b", 1), "invalid_processor"),
        (record("p", 0), "invalid_partitions"),
        (
            record("p", MAX_PROCESSOR_PARTITIONS + 1),
            "invalid_partitions",
        ),
        (
            ProcessorRecord {
                inputs: (0..=MAX_PROCESSOR_TOPICS)
                    .map(|i| format!("t{i}"))
                    .collect(),
                ..record("p", 1)
            },
            "invalid_processor",
        ),
        (
            ProcessorRecord {
                state_topics: vec!["bad topic".into()],
                ..record("p", 1)
            },
            "invalid_processor",
        ),
        (
            ProcessorRecord {
                standby_replicas: MAX_STANDBY_REPLICAS + 1,
                ..record("p", 1)
            },
            "invalid_processor",
        ),
        (
            ProcessorRecord {
                component: Some("sha256: spaces".into()),
                ..record("p", 1)
            },
            "invalid_processor",
        ),
        (
            ProcessorRecord {
                component: Some("h".repeat(MAX_COMPONENT_LEN + 1)),
                ..record("p", 1)
            },
            "invalid_processor",
        ),
        (
            ProcessorRecord {
                spec: serde_json::Value::String("s".repeat(MAX_PROCESSOR_SPEC_BYTES)),
                ..record("p", 1)
            },
            "too_large",
        ),
    ];
    for (r, code) in cases {
        let name = r.name.chars().take(20).collect::<String>();
        let cmd = MetadataCommand::UpsertProcessor {
            record: r,
            expected_version: None,
        };
        assert_eq!(refused(&mut m, cmd), code, "{name}");
    }
    // A spec just within the bound is taken.
    let fits = ProcessorRecord {
        spec: serde_json::Value::String("s".repeat(MAX_PROCESSOR_SPEC_BYTES - 2)),
        ..record("p", 1)
    };
    upsert(&mut m, &fits, None).unwrap();
}

#[test]
fn the_number_of_processors_is_bounded() {
    let mut m = with_nodes(1);
    for i in 0..MAX_PROCESSORS {
        upsert(&mut m, &record(&format!("p{i}"), 1), None).unwrap();
    }
    let one_more = MetadataCommand::UpsertProcessor {
        record: record("last", 1),
        expected_version: None,
    };
    assert_eq!(refused(&mut m, one_more), "too_many_processors");
    // A redeploy of an existing one is still fine.
    upsert(&mut m, &record("p0", 1), Some(1)).unwrap();
}

#[test]
fn an_owner_change_bumps_the_epoch_and_a_stale_epoch_is_refused() {
    let mut m = with_nodes(3);
    upsert(&mut m, &record("p", 2), None).unwrap();
    moved(
        &mut m,
        assign("p", vec![mv(0, 0, 1, vec![2]), mv(1, 0, 2, vec![])]),
    )
    .unwrap();
    let t0 = m.task("p", 0).unwrap().clone();
    assert_eq!((t0.owner, t0.epoch, t0.standbys), (Some(1), 1, vec![2]));
    assert_eq!(m.max_task_epoch, 1);
    // The same decision again is stale: the epoch moved.
    let again = assign("p", vec![mv(0, 0, 3, vec![])]);
    assert_eq!(refused(&mut m, again), "stale_task_epoch");
    // Standbys only: the owner and the epoch stay.
    moved(&mut m, assign("p", vec![mv(0, 1, 1, vec![3])])).unwrap();
    let t0 = m.task("p", 0).unwrap();
    assert_eq!(
        (t0.owner, t0.epoch, t0.standbys.clone()),
        (Some(1), 1, vec![3])
    );
    // A move to another node: +1.
    moved(&mut m, assign("p", vec![mv(0, 1, 2, vec![1])])).unwrap();
    assert_eq!(m.task("p", 0).unwrap().epoch, 2);
    assert_eq!(
        m.task("p", 1).unwrap().epoch,
        1,
        "the other task is untouched"
    );
}

#[test]
fn task_moves_are_checked() {
    let mut m = with_nodes(4);
    upsert(&mut m, &record("p", 2), None).unwrap();
    m.apply(&MetadataCommand::FenceNode { node: 3 }).unwrap();
    m.apply(&MetadataCommand::DecommissionNode { node: 4 })
        .unwrap();
    let cases: Vec<(MetadataCommand, &str)> = vec![
        (
            assign("nope", vec![mv(0, 0, 1, vec![])]),
            "unknown_processor",
        ),
        (assign("p", vec![mv(2, 0, 1, vec![])]), "unknown_task"),
        (assign("p", vec![mv(-1, 0, 1, vec![])]), "unknown_task"),
        (
            assign("p", vec![mv(0, 0, 1, vec![]), mv(0, 0, 2, vec![])]),
            "invalid_task_assignment",
        ),
        (assign("p", vec![mv(0, 5, 1, vec![])]), "stale_task_epoch"),
        // A fenced, a draining and an unknown node may not take a task.
        (
            assign("p", vec![mv(0, 0, 3, vec![])]),
            "invalid_task_assignment",
        ),
        (
            assign("p", vec![mv(0, 0, 4, vec![])]),
            "invalid_task_assignment",
        ),
        (
            assign("p", vec![mv(0, 0, 9, vec![])]),
            "invalid_task_assignment",
        ),
        // Standbys: distinct, not the owner, live, at most standby_replicas (1).
        (
            assign("p", vec![mv(0, 0, 1, vec![1])]),
            "invalid_task_assignment",
        ),
        (
            assign("p", vec![mv(0, 0, 1, vec![3])]),
            "invalid_task_assignment",
        ),
        (
            assign("p", vec![mv(0, 0, 1, vec![2, 4])]),
            "invalid_task_assignment",
        ),
        (
            MetadataCommand::AssignTasks {
                processor: "p".into(),
                version: Some(7),
                assignments: vec![mv(0, 0, 1, vec![])],
            },
            "stale_processor_version",
        ),
    ];
    for (cmd, code) in cases {
        assert_eq!(refused(&mut m, cmd.clone()), code, "{cmd:?}");
    }
    // A draining node may stay a standby (it is live); the version may be named.
    m.apply(&MetadataCommand::AssignTasks {
        processor: "p".into(),
        version: Some(1),
        assignments: vec![mv(0, 0, 1, vec![4])],
    })
    .unwrap();
    // An owner that is no longer assignable may keep the task while its standbys change.
    m.apply(&MetadataCommand::FenceNode { node: 1 }).unwrap();
    moved(&mut m, assign("p", vec![mv(0, 1, 1, vec![2])])).unwrap();
    assert_eq!(m.task("p", 0).unwrap().owner, Some(1));
    // In a batch, one refused move refuses them all.
    let before = m.clone();
    let batch = MetadataCommand::Batch {
        commands: vec![
            assign("p", vec![mv(1, 0, 2, vec![])]),
            assign("p", vec![mv(0, 0, 2, vec![])]),
        ],
    };
    assert_eq!(m.apply(&batch).unwrap_err().code(), "stale_task_epoch");
    assert_eq!(m, before);
}

#[test]
fn only_the_owner_at_the_current_epoch_may_commit() {
    let mut m = with_nodes(2);
    upsert(&mut m, &record("p", 1), None).unwrap();
    let check = |m: &ClusterMetadata, node, epoch| {
        m.check_task_owner("p", 0, node, epoch)
            .map_err(|e| e.code())
    };
    assert_eq!(check(&m, 1, 0), Err("not_task_owner"), "not assigned yet");
    moved(&mut m, assign("p", vec![mv(0, 0, 1, vec![2])])).unwrap();
    assert_eq!(check(&m, 1, 1), Ok(()));
    assert_eq!(check(&m, 2, 1), Err("not_task_owner"), "a standby");
    moved(&mut m, assign("p", vec![mv(0, 1, 2, vec![1])])).unwrap();
    assert_eq!(check(&m, 1, 1), Err("stale_task_epoch"), "the zombie");
    assert_eq!(check(&m, 2, 2), Ok(()));
    assert_eq!(
        m.check_task_owner("p", 1, 2, 2).map_err(|e| e.code()),
        Err("unknown_task")
    );
    assert_eq!(
        m.check_task_owner("q", 0, 2, 2).map_err(|e| e.code()),
        Err("unknown_processor")
    );
    let owned: Vec<_> = m.owned_tasks(2).map(|(p, i, t)| (p, i, t.epoch)).collect();
    assert_eq!(owned, vec![("p", 0, 2)]);
    assert_eq!(m.standby_tasks(1).count(), 1);
    assert_eq!(m.owned_tasks(1).count(), 0);
}

#[test]
fn epochs_are_never_reused_across_a_delete_and_re_create() {
    let mut m = with_nodes(2);
    upsert(&mut m, &record("p", 1), None).unwrap();
    moved(&mut m, assign("p", vec![mv(0, 0, 1, vec![])])).unwrap();
    moved(&mut m, assign("p", vec![mv(0, 1, 2, vec![])])).unwrap();
    assert_eq!(m.task("p", 0).unwrap().epoch, 2);
    m.apply(&MetadataCommand::DeleteProcessor { name: "p".into() })
        .unwrap();
    upsert(&mut m, &record("p", 1), None).unwrap();
    let fresh = m.task("p", 0).unwrap().clone();
    assert_eq!((fresh.owner, fresh.epoch), (None, 2));
    moved(&mut m, assign("p", vec![mv(0, 2, 1, vec![])])).unwrap();
    assert_eq!(
        m.task("p", 0).unwrap().epoch,
        3,
        "above every epoch the old p/0 had"
    );
}

#[test]
fn a_redeploy_with_fewer_standbys_trims_them() {
    let mut m = with_nodes(3);
    let mut r = record("p", 1);
    r.standby_replicas = 2;
    upsert(&mut m, &r, None).unwrap();
    moved(&mut m, assign("p", vec![mv(0, 0, 1, vec![2, 3])])).unwrap();
    r.standby_replicas = 1;
    upsert(&mut m, &r, Some(1)).unwrap();
    let t = m.task("p", 0).unwrap();
    assert_eq!(
        (t.owner, t.epoch, t.standbys.clone()),
        (Some(1), 1, vec![2])
    );
}

#[test]
fn old_snapshots_read_and_new_commands_have_a_stable_form() {
    // A format-2 snapshot: no catalog fields.
    let mut old = with_nodes(1);
    register(&mut old, 2);
    let json = serde_json::to_string(&old).unwrap();
    assert!(!json.contains("processors"), "empty catalog not written");
    let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
    assert_eq!(back, old);
    assert!(back.processors.is_empty() && back.tasks.is_empty());

    let mut m = with_nodes(2);
    upsert(&mut m, &record("p", 2), None).unwrap();
    moved(&mut m, assign("p", vec![mv(1, 0, 2, vec![1])])).unwrap();
    let json = serde_json::to_string(&m).unwrap();
    let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);

    let cmd = assign("p", vec![mv(1, 4, 2, vec![1])]);
    let json = serde_json::to_string(&VersionedCommand::new(cmd.clone())).unwrap();
    assert_eq!(
        json,
        r#"{"version":4,"command":{"type":"assign_tasks","processor":"p","version":null,"assignments":[{"partition":1,"epoch":4,"owner":2,"standbys":[1]}]}}"#
    );
    let back: VersionedCommand = serde_json::from_str(&json).unwrap();
    assert_eq!(back.command, cmd);
    // Format 4: a warm-up is written only when there is one; format 3's records and task
    // assignments read with none and the default acceptable recovery lag.
    let mut warm = mv(0, 4, 2, vec![]);
    warm.warmups = vec![3];
    let json = serde_json::to_string(&warm).unwrap();
    assert_eq!(
        json,
        r#"{"partition":0,"epoch":4,"owner":2,"standbys":[],"warmups":[3]}"#
    );
    let old: TaskAssignment = serde_json::from_str(r#"{"owner":2,"epoch":4}"#).unwrap();
    assert!(old.warmups.is_empty());
    let old: ProcessorRecord =
        serde_json::from_str(r#"{"name":"p","partitions":2,"standby_replicas":1}"#).unwrap();
    assert_eq!(old.acceptable_recovery_lag, DEFAULT_ACCEPTABLE_RECOVERY_LAG);
}

#[test]
fn a_forced_move_off_a_live_owner_moves_the_epoch_at_once() {
    let mut m = with_nodes(3);
    upsert(&mut m, &record("p", 1), None).unwrap();
    m.apply(&assign("p", vec![mv(0, 0, 1, vec![])])).unwrap();
    m.apply(&assign("p", vec![mv(0, 1, 2, vec![])])).unwrap();
    assert_eq!(
        m.task("p", 0).unwrap().moving_to,
        Some(2),
        "graceful: waits"
    );
    let mut forced = mv(0, 1, 2, vec![]);
    forced.force = true;
    m.apply(&assign("p", vec![forced])).unwrap();
    let t = m.task("p", 0).unwrap();
    assert_eq!((t.owner, t.epoch, t.moving_to), (Some(2), 2, None));
    // The old owner's late release is refused: its epoch is gone.
    assert!(matches!(
        m.apply(&MetadataCommand::ReleaseTask {
            processor: "p".into(),
            partition: 0,
            epoch: 1,
            node: 1,
        }),
        Err(MetadataError::StaleTaskEpoch { .. })
    ));
}

#[test]
fn warm_ups_are_checked_and_a_move_onto_one_ends_it() {
    let mut m = with_nodes(3);
    upsert(&mut m, &record("p", 1), None).unwrap();
    moved(&mut m, assign("p", vec![mv(0, 0, 1, vec![2])])).unwrap();
    let with = |owner, standbys: Vec<NodeId>, warmups: Vec<NodeId>| {
        let mut w = mv(0, 1, owner, standbys);
        w.warmups = warmups;
        assign("p", vec![w])
    };
    for (bad, why) in [
        (with(1, vec![2], vec![1]), "the owner"),
        (with(1, vec![2], vec![2]), "a standby"),
        (with(1, vec![2], vec![9]), "an unknown node"),
        (with(1, vec![], vec![2, 3]), "two warm-ups"),
    ] {
        assert!(
            matches!(
                m.apply(&bad),
                Err(MetadataError::InvalidTaskAssignment { .. })
            ),
            "a warm-up on {why} was taken"
        );
    }
    m.apply(&with(1, vec![2], vec![3])).unwrap();
    assert_eq!(m.task("p", 0).unwrap().warmups, vec![3]);
    assert_eq!(m.standby_tasks(3).count(), 1, "node 3 keeps a copy");
    // The task moves onto its warm-up (node 1 live: gracefully); once released, node 3 owns
    // it and is no longer its warm-up.
    m.apply(&with(3, vec![2], vec![])).unwrap();
    release_all(&mut m);
    let t = m.task("p", 0).unwrap();
    assert_eq!((t.owner, t.epoch, t.warmups.clone()), (Some(3), 2, vec![]));
}

#[test]
fn a_move_off_a_live_owner_waits_for_its_release() {
    let mut m = with_nodes(3);
    upsert(&mut m, &record("p", 1), None).unwrap();
    m.apply(&assign("p", vec![mv(0, 0, 1, vec![])])).unwrap();
    // Node 1 is live: the task stays with it (same epoch) until it releases the task.
    m.apply(&assign("p", vec![mv(0, 1, 2, vec![])])).unwrap();
    let t = m.task("p", 0).unwrap().clone();
    assert_eq!((t.owner, t.epoch, t.moving_to), (Some(1), 1, Some(2)));
    assert!(
        m.check_task_owner("p", 0, 1, 1).is_ok(),
        "its final commit is taken"
    );
    let release = |node: NodeId, epoch: u64| MetadataCommand::ReleaseTask {
        processor: "p".into(),
        partition: 0,
        epoch,
        node,
    };
    assert_eq!(refused(&mut m, release(3, 1)), "not_task_owner");
    assert_eq!(refused(&mut m, release(1, 0)), "stale_task_epoch");
    m.apply(&release(1, 1)).unwrap();
    let t = m.task("p", 0).unwrap().clone();
    assert_eq!((t.owner, t.epoch, t.moving_to), (Some(2), 2, None));
    assert_eq!(
        m.check_task_owner("p", 0, 1, 1).unwrap_err().code(),
        "stale_task_epoch"
    );
    // A second release of the same move is stale.
    assert_eq!(refused(&mut m, release(1, 1)), "stale_task_epoch");
    // Moved back to its owner while moving: called off.
    m.apply(&assign("p", vec![mv(0, 2, 3, vec![])])).unwrap();
    m.apply(&assign("p", vec![mv(0, 2, 2, vec![])])).unwrap();
    assert_eq!(m.task("p", 0).unwrap().moving_to, None);
    // A fenced owner's task moves at once, under the next epoch.
    m.apply(&assign("p", vec![mv(0, 2, 3, vec![])])).unwrap();
    m.apply(&MetadataCommand::FenceNode { node: 2 }).unwrap();
    m.apply(&assign("p", vec![mv(0, 2, 1, vec![])])).unwrap();
    let t = m.task("p", 0).unwrap().clone();
    assert_eq!((t.owner, t.epoch, t.moving_to), (Some(1), 3, None));
    // A release whose target is gone leaves the task with its owner.
    m.apply(&assign("p", vec![mv(0, 3, 3, vec![])])).unwrap();
    m.apply(&MetadataCommand::FenceNode { node: 3 }).unwrap();
    m.apply(&release(1, 3)).unwrap();
    let t = m.task("p", 0).unwrap().clone();
    assert_eq!((t.owner, t.epoch, t.moving_to), (Some(1), 3, None));
}
