//! `kill -9` of `graft serve --projects` while the studio stores uploads and while it trains: after
//! a restart every acknowledged example is there and whole, no half-written file is taken for an
//! example, the saved recognizer (if any) loads, and the project still trains.
#![cfg(feature = "serve")]

mod common;

use std::io::{BufRead, BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use graft::recognizer::Recognizer;
use serde_json::Value;

/// A `graft serve --projects DIR` child on an ephemeral loopback port.
struct Served {
    child: Child,
    base: String,
}

impl Served {
    fn start(projects: &Path, cache: &Path) -> Served {
        let (engine_var, engine_value) = common::engine_env();
        let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
            .args(["serve", "--projects"])
            .arg(projects)
            .args(["--addr", "127.0.0.1:0", "--json", "--quiet"])
            .env("GRAFT_CACHE", cache)
            .env(engine_var, engine_value)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("graft serve starts");
        // `--json`: one line with the address it listens on, once it does.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let base = format!("http://{}", started["addr"].as_str().unwrap());
        Served { child, base }
    }

    fn kill(mut self) {
        // SIGKILL: no handler runs, nothing is flushed.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn call(request: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Option<(u16, Value)> {
    let mut response = request.ok()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

fn post(base: &str, path: &str, body: &[u8]) -> Option<(u16, Value)> {
    call(agent().post(format!("{base}{path}")).send(body))
}

fn get(base: &str, path: &str) -> Option<(u16, Value)> {
    call(agent().get(format!("{base}{path}")).call())
}

/// The shipped images of `class`, each made distinct `copies` times (one pixel changed), as PNGs:
/// many different uploads from a few files.
fn variants(class: &str, copies: usize) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/data/tuxpaint-dev")
        .join(class);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for copy in 0..copies {
        for file in &files {
            let mut img = image::open(file).unwrap().to_rgb8();
            img.put_pixel(0, 0, image::Rgb([copy as u8, 7, 11]));
            let mut png = Vec::new();
            img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                .unwrap();
            out.push(png);
        }
    }
    out
}

/// Every file in the project's class folders: an example whose name is its content's hash, or
/// one of graft's temporary files (`.graft-tmp-*`), which nothing reads as an example.
fn check_stored(project: &Path, acknowledged: &[(String, String)]) -> usize {
    for (class, file) in acknowledged {
        let path = project.join(class).join(file);
        assert!(path.is_file(), "acknowledged {class}/{file} is lost");
    }
    let mut examples = 0;
    for class in std::fs::read_dir(project).unwrap() {
        let class = class.unwrap().path();
        if !class.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&class).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if name.starts_with(".graft-tmp-") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let hash = graft::cache::sha256_hex(&bytes);
            let stem = name.split('.').next().unwrap();
            assert_eq!(&hash[..16], stem, "{} is not whole", path.display());
            examples += 1;
        }
    }
    examples
}

/// Starts training the project (202: it trains in the background).
fn start_training(base: &str) {
    let (status, answer) = post(base, "/v1/projects/crash/train", b"").unwrap();
    assert_eq!(status, 202, "{answer}");
}

/// Waits until the project's training state is one of `states`, and gives it.
fn wait_state(base: &str, states: &[&str], secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some((200, project)) = get(base, "/v1/projects/crash") {
            let state = project["training"]["state"].as_str().unwrap_or_default();
            if states.contains(&state) {
                return state.to_string();
            }
            assert_ne!(state, "failed", "{project}");
        }
        assert!(Instant::now() < deadline, "no state in {states:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_loses_no_acknowledged_example_and_no_saved_model() {
    let tmp = tempfile::tempdir().unwrap();
    let projects = tmp.path().join("projects");
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&projects).unwrap();
    let project = projects.join("crash");

    // Killed while uploads stream in from four clients.
    let served = Served::start(&projects, &cache);
    let (status, _) = call(
        agent()
            .post(format!("{}/v1/projects", served.base))
            .header("Content-Type", "application/json")
            .send(r#"{"name": "crash", "base": "efficientnet-lite0"}"#),
    )
    .unwrap();
    assert_eq!(status, 201);
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let uploaders: Vec<_> = ["fish", "planet", "tool", "roadsign"]
        .into_iter()
        .map(|class| (class, variants(class, 8)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|(class, uploads)| {
            let (base, acknowledged, stop) =
                (served.base.clone(), acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                for png in uploads {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let path = format!("/v1/projects/crash/classes/{class}/examples");
                    match post(&base, &path, &png) {
                        Some((201, answer)) => acknowledged
                            .lock()
                            .unwrap()
                            .push((class.to_string(), answer["file"].as_str().unwrap().into())),
                        Some((status, answer)) => panic!("upload: {status} {answer}"),
                        None => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Killed once every class has some, while all four still upload (the smallest class has 56).
    while acknowledged.lock().unwrap().len() < 120 {
        assert!(Instant::now() < deadline, "uploads too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    served.kill();
    stop.store(true, Ordering::Relaxed);
    for u in uploaders {
        u.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored = check_stored(&project, &acknowledged);
    // Each upload is distinct, so each acknowledgement is one file; the uploads in flight when the
    // server died may have been stored without their answer.
    assert!(
        stored >= acknowledged.len(),
        "{stored} stored, {} acknowledged",
        acknowledged.len()
    );

    // After a restart: the project is there with its examples, and trains.
    let served = Served::start(&projects, &cache);
    let (_, shown) = get(&served.base, "/v1/projects/crash").unwrap();
    let shown: u64 = shown["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["examples"].as_u64().unwrap())
        .sum();
    assert_eq!(shown as usize, stored);
    start_training(&served.base);
    wait_state(&served.base, &["done"], 600);
    let saved = project.join("recognizer.safetensors");
    let first = Recognizer::load(&saved).unwrap();
    assert_eq!(first.labels(), ["fish", "planet", "roadsign", "tool"]);

    // Killed while it trains again: the saved recognizer still loads (the old one or the new).
    start_training(&served.base);
    // Killed while the head trains, right before its save (or just after, when training is
    // faster than the look).
    let state = wait_state(&served.base, &["training", "done"], 600);
    served.kill();
    eprintln!("killed while {state}");
    Recognizer::load(&saved).unwrap();
    check_stored(&project, &acknowledged);

    // And the project trains once more after the restart, and its model answers.
    let served = Served::start(&projects, &cache);
    start_training(&served.base);
    wait_state(&served.base, &["done"], 600);
    Recognizer::load(&saved).unwrap();
    let png = &variants("planet", 1)[0];
    let (status, answer) = post(&served.base, "/v1/models/crash/predict", png).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["label"], "planet", "{answer}");
    served.kill();
}
