//! Uploads (processors, functions, artifacts) cannot exhaust the server's memory: they are
//! spooled to files under `<data-dir>/uploads` while they arrive, at most
//! `--max-concurrent-uploads` run at once (more get `503 too_many_uploads`), their files go
//! away on every path, and a multipart part sent twice is a 400 (issue #12, finding 5).

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, eventually, guest};

/// Upload size of the memory test, and the bound on the server's peak RSS while 12 such
/// uploads arrive at once: the idle RSS plus, for each of the 4 admitted uploads, one copy
/// of the module (read back from its file to be validated), plus 128 MiB of slack. Before
/// the uploads were spooled and capped, 12 uploads of 83 MB held 842 MB.
const UPLOAD_BYTES: usize = 80_000_000;
const BOUND_BYTES: u64 = 4 * UPLOAD_BYTES as u64 + (128 << 20);

/// `VmRSS`/`VmHWM` (bytes) of a process, from /proc/<pid>/status.
fn vm(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

const BOUNDARY: &str = "weir-upload-test-5c1e";

/// A multipart part: its name and its bytes.
type Part<'a> = (&'a str, &'a [u8]);

fn multipart(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{name}\"\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn post_multipart(
    http: &reqwest::blocking::Client,
    url: &str,
    body: Vec<u8>,
) -> reqwest::Result<(u16, Value)> {
    let r = http
        .post(url)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()?;
    let status = r.status().as_u16();
    Ok((status, r.json().unwrap_or(Value::Null)))
}

fn spool_files(s: &Server) -> usize {
    std::fs::read_dir(s.data_dir().join("uploads"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_multipart_part_sent_twice_is_refused() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name": "in"}));
    let wasm = guest("uppercase");
    let processor = json!({"name": "up", "inputs": ["in"], "outputs": ["out"]}).to_string();
    let other = json!({"name": "up", "inputs": ["in"], "outputs": ["elsewhere"]}).to_string();
    let function = json!({"name": "mask"}).to_string();
    let udf = guest("udf-mask");
    let cases: Vec<(&str, Vec<Part>)> = vec![
        (
            "/v1/processors",
            vec![
                ("spec", processor.as_bytes()),
                ("wasm", &wasm),
                ("spec", other.as_bytes()),
            ],
        ),
        (
            "/v1/processors",
            vec![
                ("wasm", &wasm),
                ("spec", processor.as_bytes()),
                ("wasm", &wasm),
            ],
        ),
        (
            "/v1/functions",
            vec![
                ("spec", function.as_bytes()),
                ("wasm", &udf),
                ("wasm", &udf),
            ],
        ),
    ];
    for (path, parts) in cases {
        let names: Vec<&str> = parts.iter().map(|(n, _)| *n).collect();
        let (status, body) =
            post_multipart(&s.http, &format!("{}{path}", s.url), multipart(&parts)).unwrap();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("duplicate_field")),
            "{path} {names:?}: {body}"
        );
    }
    assert_eq!(s.get("/v1/processors/up").0, 404);
    assert_eq!(s.get("/v1/functions/mask").0, 404);
    assert_eq!(spool_files(&s), 0);
}

#[test]
fn twelve_concurrent_80_mb_uploads_stay_under_the_memory_bound() {
    let s = Server::start(&["--max-upload-bytes", "100000000"]);
    s.create_topic(json!({"name": "in"}));
    let pid = s.pid();
    let idle = vm(pid, "VmRSS");
    // A component preamble and then 80 MB: the whole module arrives before it is judged.
    let mut wasm = b"\0asm\x0d\0\x01\0".to_vec();
    wasm.resize(UPLOAD_BYTES, 0x41);
    let spec = json!({"name": "big", "inputs": ["in"], "outputs": ["out"],
                      "limits": {"max_module_bytes": 100_000_000u64}})
    .to_string();
    let body = Arc::new(multipart(&[("spec", spec.as_bytes()), ("wasm", &wasm)]));
    drop(wasm);
    let barrier = Arc::new(Barrier::new(12));
    let url = format!("{}/v1/processors", s.url);
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let (body, barrier, url, http) =
                (body.clone(), barrier.clone(), url.clone(), s.http.clone());
            std::thread::spawn(move || {
                barrier.wait();
                post_multipart(&http, &url, body.to_vec())
            })
        })
        .collect();
    let mut admitted = 0;
    let mut refused = 0;
    for t in threads {
        match t.join().unwrap() {
            Ok((503, b)) => {
                assert_eq!(b["error"]["code"], "too_many_uploads", "{b}");
                refused += 1;
            }
            Ok((status, b)) => {
                assert!((400..500).contains(&status), "{status}: {b}");
                admitted += 1;
            }
            // A refused upload's body is not read: the client may see the connection
            // close while it is still sending, instead of the 503. Never a hang.
            Err(e) => {
                assert!(!e.is_timeout(), "an upload hung: {e}");
                refused += 1;
            }
        }
    }
    let peak = vm(pid, "VmHWM");
    eprintln!(
        "12 uploads of {UPLOAD_BYTES} bytes: {admitted} judged, {refused} refused; \
         idle RSS {} MiB, peak {} MiB, bound {} MiB",
        idle >> 20,
        peak >> 20,
        (idle + BOUND_BYTES) >> 20
    );
    assert!(admitted >= 1, "no upload was admitted");
    assert!(
        peak < idle + BOUND_BYTES,
        "peak RSS {} MiB over the bound {} MiB",
        peak >> 20,
        (idle + BOUND_BYTES) >> 20
    );
    assert_eq!(s.get("/health").0, 200);
    assert!(eventually(Duration::from_secs(10), || spool_files(&s) == 0));
}

#[test]
fn uploads_over_the_cap_get_503_and_spool_files_never_outlive_their_upload() {
    let mut s = Server::start(&["--max-concurrent-uploads", "1"]);
    // One upload in progress: announces 10 MB, sends 1 MB, then stalls.
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut slow = TcpStream::connect(&addr).unwrap();
    write!(
        slow,
        "PUT /v1/artifacts/slow HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10000000\r\n\r\n"
    )
    .unwrap();
    slow.write_all(&vec![0u8; 1 << 20]).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || spool_files(&s) == 1),
        "the upload is spooled to a file while it arrives"
    );
    // Another upload is refused at once, not queued.
    let r = s
        .http
        .put(format!("{}/v1/artifacts/other", s.url))
        .body(vec![0u8; 100])
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().unwrap_or(Value::Null);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("too_many_uploads")),
        "{body}"
    );
    // The client goes away mid-upload: its file is removed and its place freed.
    drop(slow);
    assert!(
        eventually(Duration::from_secs(10), || spool_files(&s) == 0),
        "the spool file of an abandoned upload is removed"
    );
    let status = s
        .http
        .put(format!("{}/v1/artifacts/other", s.url))
        .body(vec![0u8; 100])
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_ne!(status, 503, "the abandoned upload's place is freed");

    // Files left by a crash are removed at start.
    assert!(s.terminate());
    let stray = s.data_dir().join("uploads").join("upload-left-by-a-crash");
    std::fs::write(&stray, b"x").unwrap();
    s.start_again();
    assert!(!stray.exists(), "{} survived the start", stray.display());
}
