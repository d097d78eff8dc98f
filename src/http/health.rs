//! `GET /health`: a liveness probe that answers as soon as the HTTP server is up.

use axum::Json;
use serde_json::{Value, json};

/// `GET /health` → 200 `{"status":"ok"}`.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}
