//! Browser tests of the web console (issue #16): Debian's headless Chromium driven through
//! `chromedriver` (WebDriver) against the real `weir` binary. One server, one driver and one
//! browser session serve every case of this file, run one after the other (a custom
//! harness, `harness = false` in Cargo.toml, so the processes are ended when the run ends);
//! `cargo test --test browser -- topics` runs only the cases whose name contains `topics`.
//!
//! Every case ends by checking the browser's console log (no errors, no CSP violations)
//! and the console's own list of page errors, and saves a screenshot of its page under
//! `<target>/tmp/browser-screenshots/`; README's pictures are two of them, copied to
//! `docs/console-processor.png` and `docs/console-sql.png`.

#[allow(dead_code)]
#[path = "../e2e/common.rs"]
mod common;
mod webdriver;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{GroupMember, Server, free_port, guest, produce_bytes};
use webdriver::{Driver, Session};

/// What every case gets.
struct Env {
    server: Server,
    browser: Session,
    shots: PathBuf,
    /// Files written for upload through file inputs.
    files: tempfile::TempDir,
}

impl Env {
    fn open(&self, hash: &str) {
        self.browser.goto(&format!("{}/{hash}", self.server.url));
    }

    fn shot(&self, name: &str) {
        self.browser
            .screenshot(&self.shots.join(format!("{name}.png")));
    }

    /// A screenshot of a taller window (README's pictures), then back to 1280×800.
    fn tall_shot(&self, name: &str) {
        self.browser.set_window(1280, 1200);
        std::thread::sleep(Duration::from_millis(300));
        self.shot(name);
        self.browser.set_window(1280, 800);
    }

    /// A guest component as a file the browser can upload.
    fn guest_file(&self, name: &str) -> PathBuf {
        let path = self.files.path().join(format!("{name}.wasm"));
        std::fs::write(&path, guest(name)).unwrap();
        path
    }

    /// No error in the browser's console (apart from responses the case provoked, whose
    /// status line the browser logs), none the page caught itself, and no control without
    /// an accessible name.
    fn check_page(&self, expected_statuses: &[u16]) {
        let errors: Vec<(String, String)> = self
            .browser
            .console_log()
            .into_iter()
            .filter(|(level, message)| {
                level == "SEVERE"
                    && !expected_statuses
                        .iter()
                        .any(|s| message.contains(&format!("status of {s}")))
            })
            .collect();
        assert!(errors.is_empty(), "browser console errors: {errors:#?}");
        let page = self
            .browser
            .exec("return window.__weirErrors || null;", vec![]);
        assert_eq!(page, json!([]), "errors caught by the page");
        // Every control has a name a screen reader can say (a label, aria-label or text).
        let unnamed = self.browser.exec(
            "const bad = []; \
             for (const el of document.querySelectorAll('input, select, textarea, button')) { \
               const label = el.labels && el.labels.length ? el.labels[0].textContent : ''; \
               const name = label || el.getAttribute('aria-label') || \
                 (el.tagName === 'BUTTON' ? el.textContent : ''); \
               if (!name.trim()) bad.push(el.outerHTML.slice(0, 120)); \
             } \
             return bad;",
            vec![],
        );
        assert_eq!(unnamed, json!([]), "controls without a name");
    }
}

type Case = fn(&Env);

const CASES: &[(&str, Case)] = &[
    ("overview_shows_the_node_and_live_rates", overview),
    ("topics_create_produce_browse_and_delete", topics),
    ("groups_show_members_offsets_and_lag", groups),
    ("processors_deploy_run_query_pause_resume", processors),
    (
        "processor_errors_show_the_offset_and_the_dead_letters",
        processor_errors,
    ),
    ("processors_deploy_by_drag_and_drop", drag_and_drop),
    ("records_show_the_exact_bytes_of_binary_data", exact_bytes),
    ("sql_runs_scripts_pull_and_push_queries", sql),
    ("functions_upload_list_and_delete", functions),
    ("cluster_page_on_a_single_node", cluster_single),
    ("cluster_page_of_three_nodes", cluster_three),
    ("narrow_window_keeps_the_navigation", narrow),
    ("keyboard_reaches_the_pages_and_the_dialog", keyboard),
    ("auth_asks_for_a_login_and_shows_errors", auth),
];

/// The arguments libtest would take that matter here: name filters, `--skip NAME`,
/// `--list`, `--ignored` (there are no ignored cases); other flags (and the values of
/// `--test-threads`, `--format`, `--color`, `--logfile`) are accepted and ignored.
struct Args {
    filters: Vec<String>,
    skips: Vec<String>,
    list: bool,
    ignored_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        filters: Vec::new(),
        skips: Vec::new(),
        list: false,
        ignored_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--list" => a.list = true,
            "--ignored" => a.ignored_only = true,
            "--skip" => a.skips.extend(it.next()),
            "--test-threads" | "--format" | "--color" | "--logfile" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            s => a.filters.push(s.to_string()),
        }
    }
    a
}

fn main() {
    let args = args();
    let list_only = args.list;
    let cases: Vec<&(&str, Case)> = CASES
        .iter()
        .filter(|_| !args.ignored_only)
        .filter(|(name, _)| {
            args.filters.is_empty() || args.filters.iter().any(|f| name.contains(f.as_str()))
        })
        .filter(|(name, _)| !args.skips.iter().any(|s| name.contains(s.as_str())))
        .collect();
    if list_only {
        for (name, _) in &cases {
            println!("{name}: test");
        }
        return;
    }
    if cases.is_empty() {
        println!("running 0 tests\n\ntest result: ok. 0 passed; 0 failed");
        return;
    }
    println!("running {} tests", cases.len());
    let started = Instant::now();
    let driver = Driver::start();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let env = Env {
        server: Server::start(&[]),
        browser: driver.session(),
        shots,
        files: tempfile::tempdir().unwrap(),
    };
    let mut failed = Vec::new();
    for (name, case) in cases.iter().map(|c| (c.0, c.1)) {
        let t = Instant::now();
        // What an earlier (failed) case left in the log is not this case's.
        env.browser.console_log();
        let result = catch_unwind(AssertUnwindSafe(|| case(&env)));
        let verdict = if result.is_ok() { "ok" } else { "FAILED" };
        println!(
            "test {name} ... {verdict} ({:.1}s)",
            t.elapsed().as_secs_f64()
        );
        if result.is_err() {
            env.shot(&format!("FAILED-{name}"));
            failed.push(name);
        }
    }
    let passed = cases.len() - failed.len();
    println!(
        "\ntest result: {}. {passed} passed; {} failed; finished in {:.1}s (screenshots in {})",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        started.elapsed().as_secs_f64(),
        env.shots.display(),
    );
    drop(env);
    drop(driver);
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
}

fn overview(env: &Env) {
    env.open("#/");
    env.browser.wait_contains("#nodes-table", "(this node)");
    env.browser.wait_contains("#health", "healthy");
    env.server
        .create_topic(json!({"name": "overview-load", "partitions": 1}));
    // Produce steadily until the chart's legend shows a non-zero produce rate (sampled
    // every 2 s from /metrics, without reloading the page).
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = stop.clone();
        let url = env.server.url.clone();
        let http = env.server.http.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = http
                    .post(format!("{url}/v1/topics/overview-load/records"))
                    .json(&json!({"records": [{"value": "x"}, {"value": "y"}]}))
                    .send();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let shown = env.browser.wait_text(
        "#chart-records .value[data-series=produced]",
        "a produce rate above zero",
        |t| t.parse::<f64>().is_ok_and(|v| v > 0.0),
    );
    env.browser.wait_contains("#topic-rates", "overview-load");
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    assert!(!shown.is_empty());
    env.shot("overview");
    env.check_page(&[]);
}

fn topics(env: &Env) {
    env.open("#/topics");
    env.browser
        .fill("#create-topic input[name=name]", "payments");
    env.browser
        .fill("#create-topic input[name=partitions]", "2");
    env.browser.click("#create-topic button[type=submit]");
    env.browser.wait_contains("#topics-table", "payments");
    // An API error is shown in the page: the same name again is a 409.
    env.browser
        .fill("#create-topic input[name=name]", "payments");
    env.browser.click("#create-topic button[type=submit]");
    env.browser
        .wait_contains("#topics-status .error", "already exists");

    // The topic's page: produce a JSON record to partition 1 from the form.
    env.browser
        .click("#topics-table a[href='#/topics/payments']");
    env.browser.wait_contains("#partitions-table", "Partition");
    env.browser.fill("#produce-key", "card-1");
    env.browser
        .fill("#produce-value", r#"{"card":"4000-0001","amount":12.5}"#);
    env.browser.select("#produce-partition", "1");
    env.browser.click("#produce button[type=submit]");
    env.browser
        .wait_contains("#produce-status", "partition 1 at offset 0");
    // The record browser shows it, the JSON pretty-printed.
    let shown = env.browser.wait_contains("#records-table", "card-1");
    assert!(shown.contains("\"amount\": 12.5"), "{shown}");
    env.browser.wait_contains("#partitions-table", "1");

    // A value with control bytes is shown as hex; browse by offset on partition 0.
    env.server.produce(
        "payments",
        vec![json!({"key": "bin", "value": "\u{1}\u{2}ab", "partition": 0})],
    );
    env.browser.select("#browse-partition", "0");
    env.browser.select("#browse-from", "offset");
    env.browser.fill("#browse-offset", "0");
    env.browser.click("#browse button[type=submit]");
    env.browser
        .wait_contains("#records-table code.hex", "01 02 61 62");
    env.shot("topic");
    // By time: an hour ago finds the record, an hour ahead finds none.
    let set_time = |offset_ms: i64| {
        env.browser.exec(
            "const d = new Date(Date.now() + arguments[0]); \
             const p = (n) => String(n).padStart(2, '0'); \
             document.getElementById('browse-time').value = \
               `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`; \
             return null;",
            vec![json!(offset_ms)],
        );
    };
    env.browser.select("#browse-from", "time");
    set_time(-3_600_000);
    env.browser.click("#browse button[type=submit]");
    env.browser.wait_contains("#records-table", "bin");
    set_time(3_600_000);
    env.browser.click("#browse button[type=submit]");
    env.browser.wait_contains("#records", "No records here.");
    // The key filter keeps the records whose key contains the text.
    env.browser.select("#browse-from", "offset");
    env.browser.fill("#browse-key", "zzz");
    env.browser.click("#browse button[type=submit]");
    env.browser
        .wait_contains("#main", "1 record(s) read, 0 shown");
    env.browser.fill("#browse-key", "bi");
    env.browser.click("#browse button[type=submit]");
    env.browser
        .wait_contains("#main", "1 record(s) read, 1 shown");
    // Delete from the list, through the confirmation dialog.
    env.open("#/topics");
    env.browser
        .click("#topics-table button[aria-label='Delete topic payments']");
    env.browser.click("#confirm-ok");
    env.browser
        .wait_text("#topics-list", "payments gone", |t| !t.contains("payments"));
    assert_eq!(env.server.get("/v1/topics/payments").0, 404);
    env.shot("topics");
    env.check_page(&[409]);
}

fn groups(env: &Env) {
    env.server
        .create_topic(json!({"name": "clicks", "partitions": 1}));
    let records: Vec<Value> = (0..5).map(|i| json!({"value": format!("c{i}")})).collect();
    env.server.produce("clicks", records);
    // A real confluent-kafka member that read the five and committed offset 1: 4 behind.
    let member = GroupMember::join(
        &env.server.kafka,
        "clicks",
        "browser-group",
        "browser-member",
        5,
        1,
    );
    env.open("#/groups");
    env.browser.wait_contains("#groups-table", "browser-group");
    env.browser
        .click("#groups-table a[href='#/groups/browser-group']");
    env.browser
        .wait_contains("#members-table", "browser-member");
    env.browser.wait_contains("#members-table", "clicks: 0");
    env.browser.wait_contains("#group-state", "Stable");
    env.browser
        .wait_text("#group-total-lag", "a lag of 4", |t| t.trim() == "4");
    // More records: the page refreshes by itself and the lag grows.
    let more: Vec<Value> = (0..3).map(|i| json!({"value": format!("d{i}")})).collect();
    env.server.produce("clicks", more);
    env.browser
        .wait_text("#group-total-lag", "a lag of 7", |t| t.trim() == "7");
    let row = env.browser.text("#lag-table tbody");
    assert!(
        row.contains("clicks") && row.contains("browser-member"),
        "{row}"
    );
    env.shot("group");
    // The member leaves: the group is empty, the offsets and lag stay.
    drop(member);
    env.browser.wait_contains("#group-state", "Empty");
    env.browser.wait_contains("#group-members", "No members");
    env.browser
        .wait_text("#group-total-lag", "a lag of 7", |t| t.trim() == "7");
    env.open("#/groups");
    env.browser.wait_contains("#groups-table", "Empty");
    env.shot("groups");
    env.check_page(&[]);
}

fn processors(env: &Env) {
    env.server
        .create_topic(json!({"name": "text", "partitions": 3}));
    env.open("#/processors");
    env.browser
        .wait_contains("#processors-list", "No processors");
    let wasm = env.guest_file("word-count");
    env.browser.choose_file("#deploy-file", &wasm);
    env.browser
        .wait_contains("#deploy-chosen", "word-count.wasm");
    env.browser.fill("#deploy-name", "wc");
    env.browser.fill("#deploy-inputs", "text");
    env.browser.fill("#deploy-outputs", "counts");
    env.browser.click("#deploy button[type=submit]");
    // The page moves to the processor; its three tasks become running.
    env.browser.wait_contains("#processor-state", "running");
    env.browser
        .wait_text("#tasks-table tbody", "3 running tasks", |t| {
            t.matches("running").count() == 3
        });
    env.server.produce(
        "text",
        vec![
            json!({"value": "the fox and the hound"}),
            json!({"value": "the end"}),
        ],
    );
    // The state browser finds the count of "the".
    env.browser.select("#store-name", "counts");
    let deadline = Instant::now() + webdriver::WAIT;
    loop {
        env.browser.fill("#store-key", "the");
        env.browser.click("#store-lookup button[type=submit]");
        std::thread::sleep(Duration::from_millis(200));
        if env.browser.text("#store-result").contains('3') {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the count of 'the' never reached 3: {}",
            env.browser.text("#store-result")
        );
    }
    // The tasks table refreshes by itself and shows the records the tasks took in.
    env.browser
        .wait_text("#tasks-table tbody", "records in above zero", |t| {
            t.lines()
                .any(|row| row.split('\t').nth(3).is_some_and(|c| c.trim() != "0"))
        });
    env.tall_shot("processor");
    // (After the README picture.) A prefix scan over the three tasks: every word, then
    // those starting with "th".
    let deadline = Instant::now() + webdriver::WAIT;
    loop {
        env.browser.fill("#scan-prefix", "");
        env.browser.click("#store-scan button[type=submit]");
        std::thread::sleep(Duration::from_millis(200));
        if env
            .browser
            .text("#scan-status")
            .contains("5 entries, all shown")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scan never showed the five words: {}",
            env.browser.text("#scan-result")
        );
    }
    let all = env.browser.text("#scan-table tbody");
    for word in ["and", "end", "fox", "hound", "the"] {
        assert!(all.contains(word), "{all}");
    }
    env.browser.fill("#scan-prefix", "th");
    env.browser.click("#store-scan button[type=submit]");
    env.browser
        .wait_contains("#scan-status", "1 entry, all shown");
    let the = env.browser.text("#scan-table tbody");
    assert!(the.contains("the") && the.contains('3'), "{the}");
    env.browser.click("#pause");
    env.browser.wait_contains("#processor-state", "paused");
    assert_eq!(env.server.processor("wc")["paused"], true);
    env.browser.click("#resume");
    env.browser.wait_contains("#processor-state", "running");
    // Redeploy from the page: the form comes filled from the spec; a new version runs.
    env.browser.click("#redeploy summary");
    env.browser.choose_file("#redeploy #deploy-file", &wasm);
    env.browser.fill("#redeploy #deploy-commit", "250");
    env.browser.click("#redeploy button[type=submit]");
    env.browser.wait_contains("#processor-version", "2");
    assert_eq!(
        env.server.processor("wc")["spec"]["commit_interval_ms"],
        250
    );
    assert_eq!(
        env.server.processor("wc")["spec"]["outputs"],
        json!(["counts"])
    );
    env.browser.wait_contains("#processor-state", "running");
    env.open("#/processors");
    env.browser.wait_contains("#processors-table", "wc");
    env.shot("processors");
    // The processor's internal topics are listed only on request.
    env.open("#/topics");
    let list = env
        .browser
        .wait_contains("#topics-list", "internal topic(s) hidden");
    assert!(
        list.contains("counts") && !list.contains("wc.counts.changelog"),
        "{list}"
    );
    env.browser.click("#show-internal");
    env.browser
        .wait_contains("#topics-table", "wc.counts.changelog");
    env.check_page(&[404]);
}

fn processor_errors(env: &Env) {
    env.server
        .create_topic(json!({"name": "boom", "partitions": 1}));
    env.server.produce(
        "boom",
        vec![json!({"value": "first"}), json!({"value": "second"})],
    );
    // A guest that traps on every record: with on_error=fail the task stops, and the page
    // says why and at which offset.
    env.server.deploy(
        &json!({"name": "boom-fail", "inputs": ["boom"], "on_error": "fail"}),
        guest("hostile-trap"),
    );
    env.open("#/processors/boom-fail");
    env.browser.wait_contains("#processor-state", "failed");
    let tasks = env
        .browser
        .wait_contains("#tasks-table", "offset 0 of boom");
    assert!(tasks.contains("deliberate panic"), "{tasks}");
    env.shot("processor-failed");
    // With on_error=dead_letter the records go to the dead-letter topic, one click away.
    env.server.deploy(
        &json!({"name": "boom-dl", "inputs": ["boom"], "on_error": "dead_letter"}),
        guest("hostile-trap"),
    );
    env.open("#/processors/boom-dl");
    env.browser
        .click("#processor-head a[href='#/topics/boom-dl.dlq']");
    env.browser.wait_contains("#main h1", "boom-dl.dlq");
    env.browser.wait_contains("#records-table", "second");
    env.check_page(&[]);
}

fn drag_and_drop(env: &Env) {
    use base64::Engine as _;
    env.server
        .create_topic(json!({"name": "dropped-text", "partitions": 1}));
    env.open("#/processors");
    env.browser.find("#deploy-drop");
    // WebDriver cannot drag a file from the desktop: the page gets the same events a drop
    // would send, with the module in the DataTransfer.
    let wasm = base64::engine::general_purpose::STANDARD.encode(guest("word-count"));
    let over = env.browser.exec(
        "const zone = document.getElementById('deploy-drop'); \
         const bin = atob(arguments[0]); const bytes = new Uint8Array(bin.length); \
         for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i); \
         const dt = new DataTransfer(); \
         dt.items.add(new File([bytes], 'word-count.wasm', { type: 'application/wasm' })); \
         zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true })); \
         const highlighted = zone.classList.contains('over'); \
         zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true })); \
         return highlighted;",
        vec![json!(wasm)],
    );
    assert_eq!(
        over,
        json!(true),
        "the drop zone is highlighted while dragging over"
    );
    env.browser
        .wait_contains("#deploy-chosen", "word-count.wasm");
    env.browser.fill("#deploy-name", "dropped");
    env.browser.fill("#deploy-inputs", "dropped-text");
    env.browser.click("#deploy button[type=submit]");
    env.browser.wait_contains("#processor-state", "running");
    assert_eq!(
        env.server.processor("dropped")["spec"]["inputs"],
        json!(["dropped-text"])
    );
    env.check_page(&[]);
}

fn exact_bytes(env: &Env) {
    env.server
        .create_topic(json!({"name": "raw-bytes", "partitions": 1}));
    // Key c3 28 and value ff fe 00 41 are not UTF-8: the page shows those bytes, not the
    // replacement characters of a lossy string.
    produce_bytes(&env.server.kafka, "raw-bytes", 0, "c328", "fffe0041");
    env.open("#/topics/raw-bytes");
    let table = env.browser.wait_contains("#records-table", "ff fe 00 41");
    assert!(table.contains("c3 28"), "{table}");
    assert!(!table.contains("ef bf bd"), "{table}");
    env.shot("topic-bytes");
    env.check_page(&[]);
}

fn cluster_single(env: &Env) {
    env.open("#/cluster");
    env.browser.wait_contains("#cluster-mode", "single node");
    let hidden = env.browser.exec(
        "return document.getElementById('cluster-details').hidden;",
        vec![],
    );
    assert_eq!(hidden, json!(true));
    env.shot("cluster-single");
    env.check_page(&[]);
}

/// Three `weir serve --peers` nodes on this machine (as `tests/e2e/replication.rs` starts
/// them).
fn three_nodes() -> Vec<Server> {
    let ports = [free_port(), free_port(), free_port()];
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    (1..=3)
        .map(|id| {
            let listen = format!("127.0.0.1:{}", ports[id - 1]);
            let id = id.to_string();
            Server::start(&[
                "--node-id",
                &id,
                "--cluster-listen",
                &listen,
                "--peers",
                &peers,
            ])
        })
        .collect()
}

fn cluster_three(env: &Env) {
    let mut nodes = three_nodes();
    // Created once the cluster has formed (a controller, every node registered).
    let spec = json!({"name": "orders", "partitions": 3, "replication_factor": 3});
    let deadline = Instant::now() + webdriver::WAIT;
    loop {
        let (status, body) = nodes[0].post("/v1/topics", &spec);
        if status == 201 || body["error"]["code"] == "topic_exists" {
            break;
        }
        assert!(Instant::now() < deadline, "no topic: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    env.browser.goto(&format!("{}/#/cluster", nodes[0].url));
    env.browser.wait_contains("#cluster-mode", "cluster");
    env.browser
        .wait_text("#cluster-nodes-table tbody", "three nodes alive", |t| {
            t.matches("alive").count() == 3
        });
    env.browser.wait_contains("#cluster-controller", "node ");
    env.browser.wait_text(
        "#partitions-map tbody",
        "orders' three partitions in sync",
        |t| {
            t.lines()
                .filter(|row| row.starts_with("orders") && row.ends_with("1, 2, 3"))
                .count()
                == 3
        },
    );
    env.browser
        .wait_contains("#cluster-issues", "Under-replicated: 0");
    env.tall_shot("cluster");
    // A node dies: the page shows it, and the partitions it held go under-replicated.
    nodes[2].kill9();
    env.browser
        .wait_text("#cluster-nodes-table tbody", "node 3 down", |t| {
            t.lines().any(|row| {
                row.starts_with('3') && (row.contains("fenced") || row.contains("unreachable"))
            })
        });
    env.browser
        .wait_text("#cluster-issues", "under-replicated partitions", |t| {
            !t.contains("Under-replicated: 0") && t.contains("orders")
        });
    env.shot("cluster-node-down");
    env.check_page(&[]);
    drop(nodes);
}

fn sql(env: &Env) {
    env.open("#/sql");
    env.browser.fill(
        "#sql-editor",
        "CREATE STREAM authorization_attempts (card_number VARCHAR, amount DOUBLE) \
         WITH (KAFKA_TOPIC='authorization_attempts', VALUE_FORMAT='JSON', PARTITIONS=3);",
    );
    env.browser.click("#sql-run");
    env.browser
        .wait_contains("#sql-streams", "AUTHORIZATION_ATTEMPTS");
    env.browser
        .find("#sql-streams a[href='#/topics/authorization_attempts']");
    let mut records: Vec<Value> = (0..5)
        .map(|_| json!({"value": r#"{"card_number":"4000-0000-0000-0002","amount":9.99}"#}))
        .collect();
    records.push(json!({"value": r#"{"card_number":"4000-0000-0000-0001","amount":120}"#}));
    env.server.produce("authorization_attempts", records);
    env.browser.fill(
        "#sql-editor",
        "CREATE STREAM possible_fraud AS SELECT card_number, count() FROM authorization_attempts \
         WINDOW TUMBLING (SIZE 5 MINUTE) GROUP BY card_number HAVING count() > 3;",
    );
    env.browser.click("#sql-run");
    env.browser.wait_contains("#sql-queries", "POSSIBLE_FRAUD");
    // The push query's rows stream into the table; the flagged card appears.
    env.browser
        .fill("#sql-editor", "SELECT * FROM possible_fraud EMIT CHANGES;");
    env.browser.click("#sql-run");
    env.browser
        .wait_contains("#sql-rows tbody", "4000-0000-0000-0002");
    assert!(
        !env.browser
            .text("#sql-rows")
            .contains("4000-0000-0000-0001")
    );
    env.tall_shot("sql");
    env.browser.click("#sql-stop");
    env.browser.wait_contains("#sql-query-state", "stopped");
    // Terminate the persistent query from the catalog, through the confirmation.
    env.browser
        .click("#sql-queries button[aria-label='Terminate CSAS_POSSIBLE_FRAUD_1']");
    env.browser.click("#confirm-ok");
    env.browser
        .wait_contains("#sql-catalog", "No persistent queries");
    // A script of several statements, then a pull query over the table they filled.
    env.browser.fill(
        "#sql-editor",
        "CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR, tier INT) \
           WITH (KAFKA_TOPIC='users', PARTITIONS=1);\n\
         INSERT INTO users (id, name, tier) VALUES ('u1', 'Ann', 1);\n\
         INSERT INTO users (id, name, tier) VALUES ('u1', 'Ann B.', 3);",
    );
    env.browser.click("#sql-run");
    env.browser.wait_contains("#sql-tables", "USERS");
    let deadline = Instant::now() + webdriver::WAIT;
    loop {
        env.browser.fill(
            "#sql-editor",
            "SELECT name, tier FROM users WHERE id = 'u1';",
        );
        env.browser.click("#sql-run");
        env.browser.wait_contains("#sql-query-state", "done");
        if env.browser.text("#sql-rows tbody").contains("Ann B.") {
            break;
        }
        assert!(Instant::now() < deadline, "the pull query never saw Ann B.");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A SQL error is shown with its position.
    env.browser
        .fill("#sql-editor", "SELECT * FROM no_such_stream;");
    env.browser.click("#sql-run");
    env.browser
        .wait_contains("#sql-results .error", "NO_SUCH_STREAM");
    // The history remembers what ran.
    env.browser
        .wait_contains("#sql-history", "SELECT * FROM possible_fraud EMIT CHANGES;");
    let statuses: Vec<u16> = vec![400, 404];
    env.check_page(&statuses);
}

fn functions(env: &Env) {
    env.open("#/functions");
    env.browser.wait_contains("#functions-list", "No functions");
    let wasm = env.guest_file("udf-mask");
    env.browser.choose_file("#function-file", &wasm);
    env.browser.fill("#function-name", "mask");
    env.browser.click("#function-upload button[type=submit]");
    env.browser.wait_contains("#functions-table", "MASK(");
    env.shot("functions");
    env.browser
        .click("#functions-table button[aria-label='Delete function MASK']");
    env.browser.click("#confirm-ok");
    env.browser.wait_contains("#functions-list", "No functions");
    env.check_page(&[]);
}

fn narrow(env: &Env) {
    env.browser.set_window(420, 800);
    env.open("#/topics");
    env.browser.wait_contains("#nav", "Processors");
    env.browser.find("#create-topic");
    env.shot("narrow-topics");
    env.browser.set_window(1280, 800);
    env.check_page(&[]);
}

/// The element that has the focus, as `tag#id:text`.
fn focused(env: &Env) -> String {
    env.browser
        .exec(
            "const e = document.activeElement; \
             return `${e.tagName.toLowerCase()}#${e.id}:${(e.textContent || '').trim().slice(0, 40)}`;",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn keyboard(env: &Env) {
    use webdriver::{ENTER, ESCAPE, TAB};
    env.server
        .create_topic(json!({"name": "kb-topic", "partitions": 1}));
    // A fresh document (a hash change alone keeps the old focus starting point).
    env.browser.goto("about:blank");
    env.open("#/");
    env.browser.wait_contains("#nodes-table", "(this node)");
    // Tab order: the skip link, the brand, then the navigation.
    env.browser.press(&[TAB]);
    assert!(focused(env).contains("Skip to content"), "{}", focused(env));
    env.browser.press(&[TAB, TAB, TAB]);
    assert!(focused(env).ends_with(":Topics"), "{}", focused(env));
    env.browser.press(&[ENTER]);
    env.browser.wait_contains("#topics-table", "kb-topic");
    // A delete button opens the confirmation with the focus on Cancel; Escape cancels.
    env.browser.exec(
        "document.querySelector(\"#topics-table button[aria-label='Delete topic kb-topic']\").focus(); return null;",
        vec![],
    );
    env.browser.press(&[ENTER]);
    env.browser.wait_text("#confirm", "the dialog open", |_| {
        env.browser
            .exec("return document.getElementById('confirm').open;", vec![])
            == json!(true)
    });
    assert!(
        focused(env).starts_with("button#confirm-cancel"),
        "{}",
        focused(env)
    );
    env.browser.press(&[ESCAPE]);
    env.browser.wait_text("#confirm", "the dialog closed", |_| {
        env.browser
            .exec("return document.getElementById('confirm').open;", vec![])
            == json!(false)
    });
    assert_eq!(env.server.get("/v1/topics/kb-topic").0, 200);
    env.check_page(&[]);
}

fn auth(env: &Env) {
    const PASSWORD: &str = "console-admin-pw";
    let server = Server::start_with_env(&["--auth"], &[("WEIR_ADMIN_PASSWORD", PASSWORD)]);
    env.browser.goto(&format!("{}/#/topics", server.url));
    env.browser.find("#login");
    // A wrong password: the API's refusal is shown in the login form.
    env.browser.fill("#login input[name=user]", "admin");
    env.browser.fill("#login input[name=password]", "wrong");
    env.browser.click("#login button[type=submit]");
    env.browser
        .wait_contains("#login .error", "authentication_failed");
    env.browser.fill("#login input[name=user]", "admin");
    env.browser.fill("#login input[name=password]", PASSWORD);
    env.browser.click("#login button[type=submit]");
    env.browser.wait_contains("#whoami", "admin");
    env.browser.wait_contains("#main h1", "Topics");
    env.shot("auth");
    // A reader logs in with a token; what the role does not allow is refused by the API and
    // the refusal is shown in the page.
    let admin = |method: reqwest::Method, path: &str, body: Value| -> Value {
        let r = server
            .http
            .request(method, format!("{}{path}", server.url))
            .basic_auth("admin", Some(PASSWORD))
            .json(&body)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().unwrap()
    };
    admin(
        reqwest::Method::POST,
        "/v1/users",
        json!({"name": "rita", "password": "rita-pw-1", "role": "reader"}),
    );
    let token = admin(
        reqwest::Method::POST,
        "/v1/tokens",
        json!({"user": "rita", "name": "console"}),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    env.browser.click("#logout");
    env.browser.find("#login");
    env.browser.fill("#login input[name=token]", &token);
    env.browser.click("#login button[type=submit]");
    env.browser.wait_contains("#whoami", "rita (reader)");
    env.browser.goto(&format!("{}/#/topics", server.url));
    env.browser
        .fill("#create-topic input[name=name]", "not-for-readers");
    env.browser.click("#create-topic button[type=submit]");
    env.browser
        .wait_contains("#topics-status .error", "forbidden");
    env.browser.click("#logout");
    env.browser.find("#login");
    env.browser
        .exec("sessionStorage.clear(); return null;", vec![]);
    env.check_page(&[401, 403]);
    drop(server);
}
