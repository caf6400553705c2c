//! The studio's HTTP routes (with `--projects DIR`): the page at `/`, and under `/v1/projects`
//! projects, their examples, training (progress as server-sent events) and downloads.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::models::State as ServerState;
use super::studio::Studio;
use crate::Error;

type Shared = Arc<ServerState>;

/// The studio page: HTML, CSS and JavaScript in one file, compiled into graft (no CDN).
const PAGE: &str = include_str!("studio.html");

/// The studio's routes (`/` is not guarded; the page sends the token the user gives it).
pub(super) fn page_router() -> Router<Shared> {
    Router::new().route("/", get(|| async { Html(PAGE) }))
}

/// The project routes, guarded like `/v1/models`.
pub(super) fn api_router() -> Router<Shared> {
    Router::new()
        .route("/v1/projects", get(list).post(create))
        .route("/v1/projects/{project}", get(show))
        .route("/v1/projects/{project}/classes/{class}/examples", post(add))
        .route(
            "/v1/projects/{project}/classes/{class}/examples/{file}",
            get(example),
        )
        .route("/v1/projects/{project}/train", post(train))
        .route("/v1/projects/{project}/events", get(events))
        .route("/v1/projects/{project}/recognizer", get(recognizer))
        .route("/v1/projects/{project}/export", get(export))
}

/// A refused request: its status and message, answered as `{"error": ...}`.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn refuse(status: StatusCode, e: impl std::fmt::Display) -> Refusal {
    Refusal(status, e.to_string())
}

/// 404 for what does not exist, 400 for the rest of the caller's mistakes.
fn refuse_error(e: Error) -> Refusal {
    let msg = e.to_string();
    let status = if msg.contains("no project named") || msg.contains("no example") {
        StatusCode::NOT_FOUND
    } else if matches!(e, Error::Invalid(_) | Error::Zoo(_) | Error::Dataset(_)) {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    refuse(status, msg)
}

fn studio(state: &Shared) -> Result<Arc<Studio>, Refusal> {
    state.studio().ok_or_else(|| {
        refuse(
            StatusCode::NOT_FOUND,
            "the studio is off: start graft serve with --projects DIR",
        )
    })
}

/// Runs blocking studio work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, Refusal> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(refuse_error(e)),
        Err(e) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

async fn list(State(state): State<Shared>) -> Result<Response, Refusal> {
    let studio = studio(&state)?;
    let projects = blocking(move || studio.list()).await?;
    Ok(Json(json!({ "projects": projects })).into_response())
}

#[derive(Deserialize)]
struct NewProject {
    name: String,
    /// A zoo base; default the demo's image base.
    base: Option<String>,
}

async fn create(
    State(state): State<Shared>,
    Json(body): Json<NewProject>,
) -> Result<Response, Refusal> {
    let studio = studio(&state)?;
    let base = body
        .base
        .unwrap_or_else(|| crate::task::demo::DEMO_BASE.to_string());
    let p = blocking(move || studio.create(&body.name, &base)).await?;
    Ok((StatusCode::CREATED, Json(json!(p))).into_response())
}

async fn show(
    State(state): State<Shared>,
    Path(project): Path<String>,
) -> Result<Response, Refusal> {
    let studio = studio(&state)?;
    let v = blocking(move || studio.describe(&project)).await?;
    Ok(Json(v).into_response())
}

async fn add(
    State(state): State<Shared>,
    Path((project, class)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Refusal> {
    let studio = studio(&state)?;
    let file = blocking(move || studio.add_example(&project, &class, &body)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "file": file }))).into_response())
}

async fn example(
    State(state): State<Shared>,
    Path((project, class, file)): Path<(String, String, String)>,
) -> Result<Response, Refusal> {
    let studio = studio(&state)?;
    let kind = match file.rsplit('.').next() {
        Some("png") => "image/png",
        Some("jpg") => "image/jpeg",
        _ => "audio/wav",
    };
    let bytes = blocking(move || studio.example(&project, &class, &file)).await?;
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}

async fn train(
    State(state): State<Shared>,
    Path(project): Path<String>,
) -> Result<Response, Refusal> {
    let studio = studio(&state)?;
    let serving = state.clone();
    let name = project.clone();
    let started = studio.train(&project, move |path| {
        if let Err(e) = serving.install(&name, path) {
            eprintln!("warning: the trained model of {name:?} could not be served: {e}");
        }
    });
    let answer = match started {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(
                json!({ "training": project, "events": format!("/v1/projects/{project}/events") }),
            ),
        )
            .into_response(),
        Err(e) => return Err(refuse_error(e)),
    };
    Ok(answer)
}

/// Server-sent events of a project's training: first its status now, then each event.
async fn events(
    State(state): State<Shared>,
    Path(project): Path<String>,
) -> Result<Response, Refusal> {
    let studio = studio(&state)?;
    let name = project.clone();
    let check = studio.clone();
    blocking(move || check.project(&name)).await?;
    let run = studio.run(&project);
    let receiver = run.events.subscribe();
    let now = run
        .status
        .lock()
        .map(|s| json!({"type": "status", "status": *s}).to_string())
        .unwrap_or_default();
    let first =
        futures_util::stream::once(
            async move { Ok::<_, Infallible>(SseEvent::default().data(now)) },
        );
    let rest = futures_util::stream::unfold(receiver, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(msg) => return Some((Ok::<_, Infallible>(SseEvent::default().data(msg)), rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures_util::StreamExt;
    let until_stopped = Box::pin(state.stopped());
    Ok(Sse::new(first.chain(rest).take_until(until_stopped))
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn recognizer(
    State(state): State<Shared>,
    Path(project): Path<String>,
) -> Result<Response, Refusal> {
    let studio = studio(&state)?;
    let name = project.clone();
    let bytes = blocking(move || {
        let path = studio.recognizer(&project)?;
        crate::limits::read(&path, crate::limits::FileKind::Recognizer)
    })
    .await?;
    Ok(download(
        bytes,
        &format!("{name}.safetensors"),
        "application/octet-stream",
    ))
}

/// The project's recognizer exported as one ONNX file (image in, as `graft export` writes it).
async fn export(
    State(state): State<Shared>,
    Path(project): Path<String>,
) -> Result<Response, Refusal> {
    let studio = studio(&state)?;
    let engine = state.settings.engine.clone();
    let name = project.clone();
    let bytes = blocking(move || {
        let path = studio.recognizer(&project)?;
        let classifier = crate::task::Classifier::load(&path, &engine, &crate::progress::Silent)?;
        let tmp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let out = tmp.path().join(format!("{project}.onnx"));
        classifier.export(&out, &crate::task::ExportOptions::default())?;
        crate::limits::read(&out, crate::limits::FileKind::Model)
    })
    .await?;
    Ok(download(
        bytes,
        &format!("{name}.onnx"),
        "application/octet-stream",
    ))
}

fn download(bytes: Vec<u8>, file: &str, kind: &'static str) -> Response {
    let disposition = format!("attachment; filename=\"{file}\"");
    (
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response()
}
