//! The HTTP API. Errors are JSON objects `{"error": "..."}` with the status that says whose fault
//! it is: 400 a body that is not a usable example, 401 a missing or wrong token, 404 an unknown
//! model, 413 a body over the limit, 415 a file of the wrong kind, 503 a full queue (with
//! Retry-After), 504 a request over the time limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ndarray::{Array1, Axis};
use serde::Deserialize;
use serde_json::{json, Value};

use super::batch::Refused;
use super::models::{Kind, Served, State as ServerState};
use crate::embeddings::prepare;
use crate::input::{FileFormat, InputSpec};

type Shared = Arc<ServerState>;

/// The routes, with the body limit and (for /v1 and /metrics) the token check.
pub(super) fn router(state: Shared) -> Router {
    let guarded = Router::new()
        .route("/v1/models", get(list))
        .route("/v1/models/{name}", get(show))
        .route("/v1/models/{name}/predict", post(predict))
        .route("/metrics", get(metrics))
        .merge(super::studio_api::api_router())
        .route_layer(middleware::from_fn_with_state(state.clone(), authorise));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route(
            "/v1/openapi.json",
            get(|| async { Json(super::openapi::document()) }),
        )
        .merge(super::studio_api::page_router())
        .merge(guarded)
        .fallback(|| async {
            failure(StatusCode::NOT_FOUND, "no such route; see /v1/openapi.json")
        })
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .with_state(state)
}

/// A JSON error answer (503s say when to retry).
fn failure(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut answer = (status, Json(json!({ "error": msg.into() }))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    answer
}

/// Why an example gets no answer: the status and the message.
type Refusal = (StatusCode, String);

/// One place in a bounded count of waiting requests, given back when dropped (also when the
/// request is dropped while it waits).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    /// A place, unless `bound` are taken.
    fn enter(count: &'a AtomicUsize, bound: usize) -> Option<Waiting<'a>> {
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < bound).then_some(n + 1)
            })
            .ok()
            .map(|_| Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The refusal of a full queue.
fn queue_full() -> Refusal {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is busy (its queue is full); retry shortly".into(),
    )
}

async fn authorise(State(state): State<Shared>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.settings.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Browsers' EventSource cannot send headers: `?token=` stands in for it.
        let in_query = request.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|pair| pair.strip_prefix("token=") == Some(token.as_str()))
        });
        if given != Some(token.as_str()) && !in_query {
            let mut answer = failure(
                StatusCode::UNAUTHORIZED,
                "send the server's token as `Authorization: Bearer TOKEN`",
            );
            answer
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return answer;
        }
    }
    next.run(request).await
}

async fn ready(State(state): State<Shared>) -> Response {
    if state.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: stopping, or no model loaded",
        )
    }
}

async fn list(State(state): State<Shared>) -> Json<Value> {
    Json(json!({ "models": state.infos() }))
}

async fn show(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    match state.get(&name) {
        Some(served) => Json(&served.info).into_response(),
        None => unknown_model(&name),
    }
}

fn unknown_model(name: &str) -> Response {
    failure(
        StatusCode::NOT_FOUND,
        format!("no model named {name:?}; GET /v1/models lists them"),
    )
}

async fn metrics(State(state): State<Shared>) -> Response {
    let text = state.stats.render(&state.batchers());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Deserialize)]
struct PredictQuery {
    /// Classes (recognizer) or neighbours (KNN) in the answer. Default 3.
    top_k: Option<usize>,
}

/// `POST /v1/models/{name}/predict`: the body is one image or WAV, or `multipart/form-data` with
/// several (each part a file).
async fn predict(
    State(state): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<PredictQuery>,
    request: Request,
) -> Response {
    let start = Instant::now();
    let served = state.get(&name);
    let model = if served.is_some() {
        name.as_str()
    } else {
        "(unknown)"
    };
    let answer = match served {
        None => unknown_model(&name),
        Some(served) => {
            let work = answer_request(&state, &served, query.top_k.unwrap_or(3), request);
            match tokio::time::timeout(state.settings.timeout, work).await {
                Ok(answer) => answer,
                Err(_) => failure(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("no answer within {} ms", state.settings.timeout.as_millis()),
                ),
            }
        }
    };
    state
        .stats
        .record(model, answer.status().as_u16(), start.elapsed());
    answer
}

async fn answer_request(
    state: &Shared,
    served: &Arc<Served>,
    top_k: usize,
    request: Request,
) -> Response {
    if top_k == 0 {
        return failure(StatusCode::BAD_REQUEST, "top_k must be at least 1");
    }
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let headers: HeaderMap = request.headers().clone();
        let body = match Bytes::from_request(request, state).await {
            Ok(body) => body,
            Err(rejection) => return failure(rejection.status(), rejection.body_text()),
        };
        let name = headers
            .get("x-file-name")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("body")
            .to_string();
        return match one_example(state, served, &name, body, top_k).await {
            Ok(mut answer) => {
                answer["model"] = json!(served.info.name);
                Json(answer).into_response()
            }
            Err((status, msg)) => failure(status, msg),
        };
    }
    let mut parts = match Multipart::from_request(request, state).await {
        Ok(parts) => parts,
        Err(rejection) => return failure(rejection.status(), rejection.body_text()),
    };
    let mut answers = Vec::new();
    loop {
        let field = match parts.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return failure(e.status(), e.body_text()),
        };
        let name = field
            .file_name()
            .or(field.name())
            .unwrap_or("part")
            .to_string();
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return failure(e.status(), e.body_text()),
        };
        answers.push((name, bytes));
    }
    if answers.is_empty() {
        return failure(StatusCode::BAD_REQUEST, "the multipart body has no file");
    }
    let results =
        futures_util::future::join_all(answers.into_iter().map(|(name, bytes)| async move {
            let result = one_example(state, served, &name, bytes, top_k).await;
            (name, result)
        }))
        .await;
    // One busy part makes the whole request busy: the client retries it as a whole.
    if results
        .iter()
        .any(|(_, r)| matches!(r, Err((status, _)) if *status == StatusCode::SERVICE_UNAVAILABLE))
    {
        let (status, msg) = queue_full();
        return failure(status, msg);
    }
    let predictions: Vec<Value> = results
        .into_iter()
        .map(|(file, result)| match result {
            Ok(mut answer) => {
                answer["file"] = json!(file);
                answer
            }
            Err((status, msg)) => json!({ "file": file, "status": status.as_u16(), "error": msg }),
        })
        .collect();
    Json(json!({ "model": served.info.name, "predictions": predictions })).into_response()
}

/// The one answer for one example.
fn first<T>(answers: Vec<T>) -> crate::Result<T> {
    answers
        .into_iter()
        .next()
        .ok_or_else(|| crate::Error::Internal("no answer for an example".into()))
}

/// One example's answer as JSON, or the refusal to send.
async fn one_example(
    state: &Shared,
    served: &Arc<Served>,
    name: &str,
    bytes: Bytes,
    top_k: usize,
) -> Result<Value, Refusal> {
    let spec = served.info.input.clone();
    if !FileFormat::is_example(&bytes, &spec) {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{name}: model '{}' takes {}; this is neither",
                served.info.name,
                match spec {
                    InputSpec::Image(_) => "images (PNG or JPEG)",
                    InputSpec::Audio(_) => "audio (WAV)",
                    InputSpec::Vector(_) => "numbers (.npy or CSV text)",
                }
            ),
        ));
    }
    let file = name.to_string();
    // As many decodes at once as there are cores: more only add thread switches and memory.
    // Those waiting for one count against the queue's bound as those waiting for a batch do.
    let waiting =
        Waiting::enter(&state.decode_waiting, state.settings.queue).ok_or_else(queue_full)?;
    let permit = (state.decoders.acquire().await)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    drop(waiting);
    let prepared =
        tokio::task::spawn_blocking(move || prepare(&bytes, std::path::Path::new(&file), &spec))
            .await;
    drop(permit);
    let input = match prepared {
        Ok(Ok(input)) => input,
        Ok(Err(e)) => return Err((StatusCode::BAD_REQUEST, e.to_string())),
        Err(e) => return Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    let embedding: Array1<f32> = match served.batcher.embed(input).await {
        Ok(row) => row,
        Err(Refused::Busy) => return Err(queue_full()),
        Err(Refused::Failed(e)) => return Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    let row = embedding.view().insert_axis(Axis(0));
    let answer = match &served.kind {
        Kind::Recognizer(r) => r.predict(row, top_k).and_then(first).map(|p| {
            json!({
                "label": p.label,
                "probability": p.probability,
                "top_k": p.top.iter().map(|(l, q)| json!({"label": l, "probability": q})).collect::<Vec<_>>(),
                "unknown": p.unknown,
            })
        }),
        Kind::Knn(k) => k.classify(row, top_k).and_then(first).map(|p| {
            json!({
                "label": p.label,
                "confidences": p.confidences.iter().map(|(l, q)| json!({"label": l, "confidence": q})).collect::<Vec<_>>(),
                "neighbours": p.neighbours.iter().map(|(i, l, s)| json!({"index": i, "label": l, "similarity": s})).collect::<Vec<_>>(),
                "unknown": p.unknown,
            })
        }),
    };
    answer.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
