//! User-defined functions through the real binary: a Rust and a Python (componentize-py,
//! ~18 MB) function uploaded over HTTP, an artifact stored, everything listed again after a
//! restart (compiled artifacts come from the cache), and deletes.

use serde_json::{Value, json};

use crate::common::{Server, guest};

fn create(s: &Server, spec: Value, wasm: Vec<u8>) -> (u16, Value) {
    s.upload(reqwest::Method::POST, "/v1/functions", &spec, wasm)
}

#[test]
fn functions_survive_a_restart() {
    let mut s = Server::start(&[]);
    let (status, body) = create(&s, json!({"name": "mask"}), guest("udf-mask"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "MASK");
    let py = guest("udf-py-upper");
    assert!(
        py.len() > 10 << 20,
        "the Python guest is {} bytes",
        py.len()
    );
    let (status, body) = create(&s, json!({"name": "py_upper"}), py);
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["signature"],
        json!({"params": ["text"], "returns": "text"})
    );
    let (status, body) = create(&s, json!({"name": "MASK"}), guest("udf-trap"));
    assert_eq!(status, 409, "{body}");

    let r = s
        .http
        .put(format!("{}/v1/artifacts/geomean", s.url))
        .body(guest("udf-geomean"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    s.restart();
    let (status, body) = s.get("/v1/functions");
    assert_eq!(status, 200);
    let names: Vec<&str> = body["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f.get("error").is_none(), "{f}");
            f["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["MASK", "PY_UPPER"]);
    assert!(s.data_dir().join("artifacts/geomean.wasm").is_file());
    assert!(
        s.data_dir()
            .join("functions/PY_UPPER/module.wasm")
            .is_file()
    );

    assert_eq!(s.delete("/v1/functions/py_upper"), 204);
    assert_eq!(s.delete("/v1/functions/py_upper"), 404);
    let (_, body) = s.get("/v1/functions/mask");
    assert_eq!(body["kind"], "scalar");
}
