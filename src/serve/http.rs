//! `serve`'s HTTP endpoints (axum, HTTP/1): `/metrics` (Prometheus text format;
//! live pipelines' lag and counters sampled first), `/healthz` (the process
//! answers), `/readyz` (200 once every pipeline finished a run ok, or a live one its
//! first sync, and every path given exists; else 503 saying what is not ready and
//! why), `/status` (JSON), and `POST /pipelines/NAME/run` (only with
//! `--allow-trigger`). [`super::auth`] guards `/status` and the trigger with the
//! token, and every route with the `Host` check; no answer to a caller without the
//! token names a pipeline (`/metrics` aside: its labels are what alerts need).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::auth;
use super::metrics::CONTENT_TYPE;
use super::state::Shared;
use crate::redact;

/// The routes, over the shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    let guarded = Router::new()
        .route("/status", get(status))
        .route("/pipelines/{name}/run", post(trigger))
        .route_layer(middleware::from_fn_with_state(shared.clone(), auth::require_token));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .layer(middleware::from_fn_with_state(shared.clone(), auth::check_host))
        .with_state(shared)
}

/// Serves the endpoints on `listener` until `stop` fires, on a thread of its own
/// with its own single-threaded runtime: probes and scrapes are answered however
/// busy the pipelines keep the main runtime's workers (a template-heavy run, a sink
/// blocked writing). The receiver gets the server's end.
pub fn spawn(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> std::io::Result<oneshot::Receiver<std::io::Result<()>>> {
    let (done, ended) = oneshot::channel();
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("http".into()).spawn(move || {
        let served = runtime.block_on(async move {
            let listener = TcpListener::from_std(listener)?;
            axum::serve(listener, router(shared))
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        let _ = done.send(served);
    })?;
    Ok(ended)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    shared.sample_live();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], shared.metrics.encode()).into_response()
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// 503 names what is not ready and why, unless a token guards the names and the
/// caller has not sent it (then only how many, and where to look).
async fn readyz(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let not_ready = shared.not_ready();
    if not_ready.is_empty() {
        redacted_json(StatusCode::OK, &json!({"ready": true}))
    } else if shared.access.authorized(&headers) {
        redacted_json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"ready": false, "not_ready": not_ready}),
        )
    } else {
        redacted_json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"ready": false, "not_ready_count": not_ready.len(), "details": "GET /status with the token"}),
        )
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    redacted_json(StatusCode::OK, &shared.status())
}

/// A JSON body with every registered secret masked (errors in summaries and reasons
/// may quote a server's message).
fn redacted_json(code: StatusCode, body: &serde_json::Value) -> Response {
    let text = redact::text(&body.to_string()).into_owned();
    (code, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn trigger(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let error = |code: StatusCode, message: String| (code, Json(json!({"error": message}))).into_response();
    if !shared.allow_trigger {
        return error(
            StatusCode::FORBIDDEN,
            "running a pipeline on request is off: start serve with --allow-trigger".to_owned(),
        );
    }
    let pipelines = shared.pipelines();
    let Some(state) = pipelines.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no pipeline named `{name}`: GET /status lists them"),
        );
    };
    if state.stopping {
        return error(
            StatusCode::CONFLICT,
            format!("pipeline `{name}` was removed and is stopping"),
        );
    }
    if state.live.is_some() {
        return error(
            StatusCode::CONFLICT,
            format!("pipeline `{name}` is live: it follows changes continuously, there is no run to start"),
        );
    }
    if let Some(running) = &state.running {
        return error(
            StatusCode::CONFLICT,
            format!(
                "pipeline `{name}` is already running (since {}): a pipeline never runs twice at once",
                super::time::rfc3339(running.since)
            ),
        );
    }
    state.trigger.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(json!({"pipeline": name, "status": "started"})),
    )
        .into_response()
}
