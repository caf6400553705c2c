//! `graft serve` on loopback (ephemeral ports): every route, the answers against graft's own,
//! hot reload under load, the limits and the refusals (each with its status), the token.
#![cfg(feature = "serve")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use graft::base::EngineOptions;
use graft::progress::Silent;
use graft::recognizer::Recognizer;
use graft::serve::{start, ServeOptions, Server};
use graft::task::Classifier;
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn compat(name: &str) -> PathBuf {
    repo().join("tests/fixtures/compat").join(name)
}

fn image(name: &str) -> PathBuf {
    repo().join("examples/data/tuxpaint-dev").join(name)
}

/// A folder with the image recognizer (`images`), the KNN index (`knn`) and the speech
/// recognizer (`words`), and a server watching it (every 100 ms) with `change` applied to the
/// options.
fn serve_folder(change: impl FnOnce(&mut ServeOptions)) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("image-recognizer.safetensors", "images.safetensors"),
        ("knn-index.safetensors", "knn.safetensors"),
        ("speech-recognizer.safetensors", "words.safetensors"),
    ] {
        std::fs::copy(compat(from), dir.path().join(to)).unwrap();
    }
    let mut options = ServeOptions {
        paths: vec![dir.path().to_path_buf()],
        addr: "127.0.0.1:0".parse().unwrap(),
        watch_ms: 100,
        ..ServeOptions::default()
    };
    change(&mut options);
    let server = start(options).unwrap();
    (dir, server)
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = response.expect("the server answers");
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    Answer {
        status: response.status().as_u16(),
        headers,
        body: response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap(),
    }
}

fn get(server: &Server, path: &str) -> Answer {
    answer(
        agent()
            .get(format!("http://{}{path}", server.addr()))
            .call(),
    )
}

fn post(server: &Server, path: &str, body: &[u8]) -> Answer {
    answer(
        agent()
            .post(format!("http://{}{path}", server.addr()))
            .header("Content-Type", "application/octet-stream")
            .send(body),
    )
}

/// A multipart/form-data body of `files` (name, bytes) and its content type.
fn multipart(files: &[(&str, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "graft-test-boundary-7d3c";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn every_route_answers_and_predictions_equal_grafts_own() {
    let (_dir, server) = serve_folder(|_| {});
    assert_eq!(get(&server, "/healthz").status, 200);
    assert_eq!(get(&server, "/readyz").status, 200);

    let models = get(&server, "/v1/models").json();
    let names: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["images", "knn", "words"]);
    let images = get(&server, "/v1/models/images").json();
    assert_eq!(images["kind"], "recognizer");
    assert_eq!(images["takes"], "image");
    assert_eq!(images["base"]["name"], "efficientnet-lite0");
    assert_eq!(images["labels"].as_array().unwrap().len(), 7);
    assert_eq!(get(&server, "/v1/models/knn").json()["kind"], "knn");

    let spec = get(&server, "/v1/openapi.json").json();
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(spec["paths"]["/v1/models/{name}/predict"]["post"].is_object());

    // One image: the same answer as graft's own classifier.
    let classifier = Classifier::load(
        &compat("image-recognizer.safetensors"),
        &EngineOptions::default(),
        &Silent,
    )
    .unwrap();
    let files = [
        "fish/animals__fish__bluegroper.png",
        "tool/household__tools__hammer.png",
    ];
    for file in files {
        let bytes = std::fs::read(image(file)).unwrap();
        let own = classifier.predict_bytes(&bytes, file, 3).unwrap();
        let served = post(&server, "/v1/models/images/predict", &bytes);
        assert_eq!(served.status, 200, "{}", served.body);
        let served = served.json();
        assert_eq!(served["model"], "images");
        assert_eq!(served["label"], own.label.as_str());
        let p = served["probability"].as_f64().unwrap() as f32;
        assert!(
            (p - own.probability).abs() < 1e-4,
            "{p} vs {}",
            own.probability
        );
        assert_eq!(served["top_k"].as_array().unwrap().len(), 3);
    }

    // Several files in one multipart request, answered in order.
    let parts: Vec<(&str, Vec<u8>)> = files
        .iter()
        .map(|f| (*f, std::fs::read(image(f)).unwrap()))
        .collect();
    let (content_type, body) = multipart(&parts);
    let served = answer(
        agent()
            .post(format!(
                "http://{}/v1/models/images/predict?top_k=1",
                server.addr()
            ))
            .header("Content-Type", &content_type)
            .send(&body[..]),
    );
    assert_eq!(served.status, 200, "{}", served.body);
    let predictions = served.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(predictions.len(), 2);
    assert_eq!(predictions[0]["file"], files[0]);
    assert_eq!(predictions[0]["top_k"].as_array().unwrap().len(), 1);

    // The KNN index and the speech recognizer.
    let fish = std::fs::read(image(files[0])).unwrap();
    let knn = post(&server, "/v1/models/knn/predict", &fish);
    assert_eq!(knn.status, 200, "{}", knn.body);
    assert_eq!(knn.json()["neighbours"].as_array().unwrap().len(), 3);
    let wav_path = repo().join(
        std::fs::read_to_string(compat("wavs.txt"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    );
    let words = Classifier::load(
        &compat("speech-recognizer.safetensors"),
        &EngineOptions::default(),
        &Silent,
    )
    .unwrap();
    let wav = std::fs::read(&wav_path).unwrap();
    let own = words.predict_bytes(&wav, "clip.wav", 3).unwrap();
    let served = post(&server, "/v1/models/words/predict", &wav);
    assert_eq!(served.status, 200, "{}", served.body);
    assert_eq!(served.json()["label"], own.label.as_str());

    let metrics = get(&server, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("graft_requests_total{model=\"images\",status=\"200\"} 3"),
        "{}",
        metrics.body
    );
    assert!(metrics
        .body
        .contains("graft_batch_size_count{base=\"efficientnet-lite0:features\"}"));
    assert!(metrics.body.contains("graft_queue_depth{base="));
    server.stop().unwrap();
}

#[test]
fn refusals_have_the_right_status() {
    let (_dir, server) = serve_folder(|o| o.max_body_bytes = 1 << 20);
    let png = std::fs::read(image("fish/animals__fish__bluegroper.png")).unwrap();
    let wav = std::fs::read(
        repo().join("tests/fixtures/audio/words/no").join(
            std::fs::read_dir(repo().join("tests/fixtures/audio/words/no"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .file_name(),
        ),
    )
    .unwrap();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "/v1/models/nope/predict",
            png.clone(),
            404,
            "no model named",
        ),
        ("/v1/models/../images/predict", png.clone(), 404, ""),
        (
            "/v1/models/images/predict",
            vec![7u8; (1 << 20) + 4096],
            413,
            "",
        ),
        (
            "/v1/models/images/predict",
            b"just some text".to_vec(),
            415,
            "takes images",
        ),
        (
            "/v1/models/images/predict",
            wav.clone(),
            415,
            "takes images",
        ),
        ("/v1/models/words/predict", png.clone(), 415, "takes audio"),
        ("/v1/models/images/predict", png[..40].to_vec(), 400, ""),
        (
            "/v1/models/images/predict?top_k=0",
            png.clone(),
            400,
            "top_k",
        ),
    ];
    for (path, body, status, needle) in cases {
        let got = post(&server, path, &body);
        assert_eq!(got.status, status, "{path}: {}", got.body);
        assert!(got.body.contains(needle), "{path}: {}", got.body);
        if status != 413 {
            assert!(got.json()["error"].is_string(), "{path}: {}", got.body);
        }
    }
    assert_eq!(get(&server, "/v1/models/nope").status, 404);
    assert_eq!(get(&server, "/no/such/route").status, 404);
    server.stop().unwrap();
}

#[test]
fn a_token_guards_the_api_and_other_addresses_need_one() {
    let (_dir, server) = serve_folder(|o| o.token = Some("s3cret".into()));
    let denied = get(&server, "/v1/models");
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    assert_eq!(get(&server, "/metrics").status, 401);
    assert_eq!(get(&server, "/healthz").status, 200);
    let allowed = answer(
        agent()
            .get(format!("http://{}/v1/models", server.addr()))
            .header("Authorization", "Bearer s3cret")
            .call(),
    );
    assert_eq!(allowed.status, 200);
    server.stop().unwrap();

    let everywhere = ServeOptions {
        paths: vec![compat("image-recognizer.safetensors")],
        addr: "0.0.0.0:0".parse().unwrap(),
        ..ServeOptions::default()
    };
    if std::env::var_os(graft::serve::TOKEN_ENV).is_none() {
        let err = start(everywhere).err().unwrap().to_string();
        assert!(err.contains("needs a token"), "{err}");
    }
}

#[test]
fn a_full_queue_answers_503_and_slow_requests_504() {
    let (_dir, server) = serve_folder(|o| {
        o.queue = 1;
        o.max_batch = 1;
    });
    let png = Arc::new(std::fs::read(image("fish/animals__fish__bluegroper.png")).unwrap());
    let addr = server.addr();
    let statuses: Vec<(u16, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..24)
            .map(|_| {
                let png = png.clone();
                s.spawn(move || {
                    let got = answer(
                        agent()
                            .post(format!("http://{addr}/v1/models/images/predict"))
                            .send(&png[..]),
                    );
                    (got.status, got.header("retry-after").map(str::to_string))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|(s, _)| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|(s, _)| *s == 200), "{statuses:?}");
    assert!(statuses.iter().any(|(s, _)| *s == 503), "{statuses:?}");
    assert!(statuses
        .iter()
        .filter(|(s, _)| *s == 503)
        .all(|(_, retry)| retry.as_deref() == Some("1")));
    server.stop().unwrap();

    let (_dir, server) = serve_folder(|o| o.timeout_ms = 1);
    let got = post(&server, "/v1/models/images/predict", &png);
    assert_eq!(got.status, 504, "{}", got.body);
    server.stop().unwrap();
}

/// A recognizer replaced (atomically, as graft saves) while clients keep asking: no request
/// fails, and the new labels answer once the folder has been looked at; a file removed is
/// unloaded, a file being written (not yet whole) is not loaded.
#[test]
fn replaced_recognizers_are_reloaded_without_failed_requests() {
    let (dir, server) = serve_folder(|_| {});
    let old = Recognizer::load(&compat("image-recognizer.safetensors")).unwrap();
    let renamed: Vec<String> = old.labels().iter().map(|l| format!("v2-{l}")).collect();
    let new = Recognizer::new(old.head().clone(), renamed, old.base().clone()).unwrap();
    let staged = dir.path().join(".staged.safetensors");
    new.save(&staged).unwrap();

    let png = Arc::new(std::fs::read(image("fish/animals__fish__bluegroper.png")).unwrap());
    let addr = server.addr();
    let stop = AtomicBool::new(false);
    let failures = AtomicUsize::new(0);
    let v2_answers = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let got = answer(
                        agent()
                            .post(format!("http://{addr}/v1/models/images/predict"))
                            .send(&png[..]),
                    );
                    if got.status != 200 {
                        failures.fetch_add(1, Ordering::SeqCst);
                    } else if got.json()["label"].as_str().unwrap().starts_with("v2-") {
                        v2_answers.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        std::fs::rename(&staged, dir.path().join("images.safetensors")).unwrap();
        let start = Instant::now();
        while v2_answers.load(Ordering::SeqCst) < 3 && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    assert!(v2_answers.load(Ordering::SeqCst) >= 3);
    let labels = get(&server, "/v1/models/images").json()["labels"].clone();
    assert!(labels[0].as_str().unwrap().starts_with("v2-"), "{labels}");

    // A file still growing is not loaded; once it stays the same it is.
    let whole = std::fs::read(compat("knn-index.safetensors")).unwrap();
    let growing = dir.path().join("late.safetensors");
    std::fs::write(&growing, &whole[..whole.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(&server, "/v1/models/late").status, 404);
    std::fs::write(&growing, &whole).unwrap();
    let start = Instant::now();
    while get(&server, "/v1/models/late").status != 200 {
        assert!(start.elapsed() < Duration::from_secs(30), "never loaded");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A file removed is unloaded.
    std::fs::remove_file(dir.path().join("knn.safetensors")).unwrap();
    let start = Instant::now();
    while get(&server, "/v1/models/knn").status != 404 {
        assert!(start.elapsed() < Duration::from_secs(30), "never unloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop().unwrap();
}

/// The CLI verb: `graft serve --json` prints where it listens, answers, and stops on SIGTERM
/// after finishing.
#[cfg(unix)]
#[test]
fn the_cli_serves_and_stops_on_sigterm() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["serve", "--json", "--addr", "127.0.0.1:0"])
        .arg(compat("image-recognizer.safetensors"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let addr = started["addr"].as_str().unwrap().to_string();
    assert_eq!(started["models"][0]["name"], "image-recognizer");
    let png = std::fs::read(image("fish/animals__fish__bluegroper.png")).unwrap();
    let got = answer(
        agent()
            .post(format!("http://{addr}/v1/models/image-recognizer/predict"))
            .send(&png[..]),
    );
    assert_eq!(got.status, 200, "{}", got.body);
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// The studio's projects: create, collect examples (stored as `graft train` reads them), train in
/// the background with progress as server-sent events, then predict, download, and find it all
/// again after a restart.
#[test]
fn a_studio_project_is_collected_trained_served_and_kept() {
    use std::io::BufRead;

    let projects = tempfile::tempdir().unwrap();
    let options = ServeOptions {
        projects: Some(projects.path().to_path_buf()),
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServeOptions::default()
    };
    let server = start(options.clone()).unwrap();
    let page = get(&server, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("graft studio"));
    assert_eq!(get(&server, "/readyz").status, 200);

    let create = |body: &str| {
        answer(
            agent()
                .post(format!("http://{}/v1/projects", server.addr()))
                .header("Content-Type", "application/json")
                .send(body),
        )
    };
    assert_eq!(
        create(r#"{"name": "stamps", "base": "efficientnet-lite0"}"#).status,
        201
    );
    assert_eq!(create(r#"{"name": "stamps"}"#).status, 400);
    assert_eq!(create(r#"{"name": "../up"}"#).status, 400);
    assert_eq!(
        create(r#"{"name": "other", "base": "resnet-9000"}"#).status,
        400
    );

    let mut uploaded = Vec::new();
    for class in ["fish", "planet", "roadsign"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(image(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files.iter().take(7) {
            let bytes = std::fs::read(file).unwrap();
            let got = post(
                &server,
                &format!("/v1/projects/stamps/classes/{class}/examples"),
                &bytes,
            );
            assert_eq!(got.status, 201, "{}", got.body);
            uploaded.push((
                class,
                got.json()["file"].as_str().unwrap().to_string(),
                bytes,
            ));
        }
    }
    let refused = post(
        &server,
        "/v1/projects/stamps/classes/fish/examples",
        b"not an image",
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    let traversal = post(
        &server,
        "/v1/projects/stamps/classes/a%2F..%2Fb/examples",
        &uploaded[0].2,
    );
    assert_eq!(traversal.status, 400, "{}", traversal.body);
    assert_eq!(
        post(
            &server,
            "/v1/projects/nope/classes/fish/examples",
            &uploaded[0].2
        )
        .status,
        404
    );

    // Stored where `graft train --data` reads them, byte for byte.
    let (class, file, bytes) = &uploaded[0];
    assert_eq!(
        &std::fs::read(projects.path().join("stamps").join(class).join(file)).unwrap(),
        bytes
    );
    let fetched = agent()
        .get(format!(
            "http://{}/v1/projects/stamps/classes/{class}/examples/{file}",
            server.addr()
        ))
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    assert_eq!(&fetched, bytes);
    let described = get(&server, "/v1/projects/stamps").json();
    let counts: Vec<u64> = described["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["examples"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [7, 7, 7]);

    // Train; follow the events until it is done.
    let events = agent()
        .get(format!(
            "http://{}/v1/projects/stamps/events",
            server.addr()
        ))
        .call()
        .unwrap();
    let started = post(&server, "/v1/projects/stamps/train", b"");
    assert_eq!(started.status, 202, "{}", started.body);
    let again = post(&server, "/v1/projects/stamps/train", b"");
    assert_eq!(again.status, 400, "{}", again.body);
    let mut lines = std::io::BufReader::new(events.into_body().into_reader()).lines();
    let mut epochs = 0;
    let result = loop {
        let line = lines.next().expect("the event stream ended").unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let event: Value = serde_json::from_str(data).unwrap();
        match event["type"].as_str().unwrap() {
            "epoch" => epochs += 1,
            "done" => break event["result"].clone(),
            "failed" => panic!("training failed: {event}"),
            _ => {}
        }
    };
    assert!(epochs > 0);
    assert_eq!(
        result["labels"],
        serde_json::json!(["fish", "planet", "roadsign"])
    );
    assert!(
        result["validation"]["accuracy"].as_f64().unwrap() > 0.5,
        "{result}"
    );

    // Served under the project's name; downloads.
    let fish = std::fs::read(image("fish/animals__fish__bluegroper.png")).unwrap();
    let predicted = post(&server, "/v1/models/stamps/predict", &fish);
    assert_eq!(predicted.status, 200, "{}", predicted.body);
    let recognizer = agent()
        .get(format!(
            "http://{}/v1/projects/stamps/recognizer",
            server.addr()
        ))
        .call()
        .unwrap()
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    let saved = projects.path().join("stamps/recognizer.safetensors");
    assert_eq!(recognizer, std::fs::read(&saved).unwrap());
    let onnx = agent()
        .get(format!(
            "http://{}/v1/projects/stamps/export",
            server.addr()
        ))
        .call()
        .unwrap()
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .unwrap();
    assert!(onnx.len() > 1 << 20, "{} bytes", onnx.len());
    assert_eq!(Recognizer::load(&saved).unwrap().labels().len(), 3);
    server.stop().unwrap();

    // After a restart the project and its model are there.
    let server = start(options).unwrap();
    assert_eq!(get(&server, "/v1/models/stamps").status, 200);
    assert_eq!(
        post(&server, "/v1/models/stamps/predict", &fish).status,
        200
    );
    server.stop().unwrap();
}
