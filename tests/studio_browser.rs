//! The studio in a real browser: Debian's `chromium`, headless, driven through `chromedriver`
//! (WebDriver, with the fantoccini client) against `graft serve --projects` on a loopback port,
//! with fake media devices whose camera plays a video of real images
//! (`--use-file-for-fake-video-capture`). A user's path through it: create a project, add two
//! classes from the webcam (hold to record a burst, one browser session per class, each with its
//! own video), a third by upload, train, read the validation accuracy and the confusion matrix,
//! open a cell, test live (an upload and a webcam frame), download the ONNX export.
//!
//! A screenshot of each step goes to `$GRAFT_ARTIFACTS/studio` (default
//! `target/tmp/studio-screenshots`), for CI to keep. Without chromium and chromedriver the test
//! says so and passes, unless `GRAFT_REQUIRE_BROWSER=1` (as `.ci/run` sets, having installed
//! them): then it fails.
#![cfg(feature = "serve")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::{Client, ClientBuilder, Locator};
use graft::base::{Backend, EngineOptions};
use graft::serve::{start, ServeOptions};
use graft::task::ExportedClassifier;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn class_images(class: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(repo().join("examples/data/tuxpaint-dev").join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    files.sort();
    files
}

/// chromium and chromedriver, where Debian's packages put them (or `$CHROMIUM`, `$CHROMEDRIVER`).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |var: &str, default: &str| {
        let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
        path.is_file().then_some(path)
    };
    let found =
        find("CHROMIUM", "/usr/bin/chromium").zip(find("CHROMEDRIVER", "/usr/bin/chromedriver"));
    if found.is_none() {
        let required = std::env::var("GRAFT_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "GRAFT_REQUIRE_BROWSER=1 but no /usr/bin/chromium and /usr/bin/chromedriver \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: no chromium + chromedriver (apt-get install chromium chromium-driver)");
    }
    found
}

/// A YUV4MPEG2 (4:2:0) video of `images`, each centred on white for `frames_each` frames at 10
/// frames per second: what Chrome's fake camera plays, in a loop.
fn y4m(images: &[PathBuf], frames_each: usize, out: &Path) {
    const W: u32 = 320;
    const H: u32 = 240;
    let mut video = format!("YUV4MPEG2 W{W} H{H} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    for path in images {
        let img = image::open(path).unwrap().to_rgb8();
        let img = image::imageops::resize(
            &img,
            (img.width() * (H - 20) / img.height()).min(W - 20),
            H - 20,
            image::imageops::FilterType::Triangle,
        );
        let mut canvas = image::RgbImage::from_pixel(W, H, image::Rgb([255, 255, 255]));
        let (x, y) = ((W - img.width()) / 2, (H - img.height()) / 2);
        image::imageops::overlay(&mut canvas, &img, x.into(), y.into());
        let (mut ys, mut us, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        let at = |x: u32, y: u32| {
            let p = canvas.get_pixel(x, y).0;
            [p[0] as f32, p[1] as f32, p[2] as f32]
        };
        for y in 0..H {
            for x in 0..W {
                let [r, g, b] = at(x, y);
                ys.push(
                    (0.299 * r + 0.587 * g + 0.114 * b)
                        .round()
                        .clamp(0.0, 255.0) as u8,
                );
            }
        }
        for y in (0..H).step_by(2) {
            for x in (0..W).step_by(2) {
                let mut rgb = [0f32; 3];
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let p = at(x + dx, y + dy);
                    (0..3).for_each(|c| rgb[c] += p[c] / 4.0);
                }
                let [r, g, b] = rgb;
                us.push(
                    (128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b)
                        .round()
                        .clamp(0.0, 255.0) as u8,
                );
                vs.push(
                    (128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b)
                        .round()
                        .clamp(0.0, 255.0) as u8,
                );
            }
        }
        for _ in 0..frames_each {
            video.extend_from_slice(b"FRAME\n");
            video.extend_from_slice(&ys);
            video.extend_from_slice(&us);
            video.extend_from_slice(&vs);
        }
    }
    std::fs::write(out, video).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver on a loopback port; when dropped (also when a step failed) it ends the browser
/// sessions it opened, so that no chromium outlives the test, then stops.
struct Driver {
    child: Child,
    url: String,
    sessions: std::sync::Mutex<Vec<String>>,
}

impl Driver {
    fn start(chromedriver: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(format!("{url}/status")).call().is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {url}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver {
            child,
            url,
            sessions: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let sessions = self.sessions.lock().map(|s| s.clone()).unwrap_or_default();
        for id in sessions {
            let _ = ureq::delete(format!("{}/session/{id}", self.url)).call();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Screenshots, numbered in the order they are taken.
struct Shots {
    dir: PathBuf,
    n: usize,
}

impl Shots {
    fn new() -> Shots {
        let dir = std::env::var_os("GRAFT_ARTIFACTS").map_or_else(
            || Path::new(env!("CARGO_TARGET_TMPDIR")).join("studio-screenshots"),
            |d| PathBuf::from(d).join("studio"),
        );
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Shots { dir, n: 0 }
    }

    async fn take(&mut self, client: &Client, step: &str) {
        self.n += 1;
        let png = client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::write(self.dir.join(format!("{:02}-{step}.png", self.n)), png).unwrap();
    }
}

/// A headless chromium session whose camera plays `video` and whose downloads go to `downloads`.
async fn session(driver: &Driver, chromium: &Path, video: &Path, downloads: &Path) -> Client {
    let audio = repo().join("tests/fixtures/audio/words/yes/000_flite-rms.wav");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1600",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                format!("--use-file-for-fake-video-capture={}", video.display()),
                format!("--use-file-for-fake-audio-capture={}", audio.display()),
            ],
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
            },
        }),
    );
    // Loopback HTTP only: no TLS.
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session");
    if let Ok(Some(id)) = client.session_id().await {
        driver.sessions.lock().unwrap().push(id);
    }
    client
}

/// Waits (up to `secs`) until `script` (the body of a function) returns something other than
/// null or false, and gives that value.
async fn until(client: &Client, secs: u64, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let value = client.execute(script, vec![]).await.unwrap();
        if !matches!(value, Value::Null | Value::Bool(false)) {
            return value;
        }
        if Instant::now() > deadline {
            let status = client
                .execute(
                    "return document.getElementById('status').textContent",
                    vec![],
                )
                .await
                .unwrap();
            panic!("timed out waiting for {what} (page status: {status})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn type_into(client: &Client, id: &str, text: &str) {
    let field = client.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Number of stored examples of `class` as the page shows them, once it shows the class.
async fn examples_shown(client: &Client, class: &str, at_least: usize) -> usize {
    let script = format!(
        "for (const d of document.querySelectorAll('#classes .class')) {{
           if (d.querySelector('b').textContent === {class:?}) {{
             const n = parseInt(d.querySelector('span').textContent);
             if (n >= {at_least}) return n;
           }}
         }}
         return null;"
    );
    until(
        client,
        60,
        &format!("{at_least}+ examples of {class}"),
        &script,
    )
    .await
    .as_u64()
    .unwrap() as usize
}

/// Starts the camera and holds the record button for `hold` (a burst, one frame per 100 ms).
async fn record_burst(client: &Client, class: &str, hold: Duration) {
    click(client, "camera").await;
    until(
        client,
        30,
        "the camera",
        "const v = document.getElementById('video'); return v.videoWidth > 0 && v.readyState >= 2;",
    )
    .await;
    let select = client.find(Locator::Id("capture-class")).await.unwrap();
    select.select_by_value(class).await.unwrap();
    let button = client.find(Locator::Id("hold")).await.unwrap();
    let actions = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: button,
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Pause { duration: hold })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client.perform_actions(actions).await.unwrap();
    until(
        client,
        60,
        "the burst's upload",
        &format!(
            "const t = document.getElementById('capture-info').textContent;
             return t.includes('examples stored in {class}') ? t : null;"
        ),
    )
    .await;
}

/// The live test's first bar ("label NN.N %"), once the page shows one.
async fn top_bar(client: &Client) -> String {
    let script = "const b = document.querySelector('#bars .bar span'); return b && b.textContent;";
    let top = until(client, 60, "the test's bars", script).await;
    top.as_str().unwrap().to_string()
}

async fn add_class(client: &Client, class: &str) {
    type_into(client, "new-class", class).await;
    click(client, "add-class").await;
}

async fn open_project(client: &Client, server: &str, name: &str) {
    client.goto(server).await.unwrap();
    let script = format!(
        "for (const b of document.querySelectorAll('#projects button')) {{
           if (b.textContent.startsWith({name:?} + ' ')) {{ b.click(); return true; }}
         }}
         return null;"
    );
    until(client, 30, "the project in the list", &script).await;
    until(
        client,
        30,
        "the open project",
        "return !document.getElementById('project').hidden;",
    )
    .await;
}

#[test]
fn the_studio_collects_trains_tests_and_exports_in_chromium() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let projects = work.path().join("projects");
    let downloads = work.path().join("downloads");
    std::fs::create_dir_all(&projects).unwrap();
    std::fs::create_dir_all(&downloads).unwrap();
    // Two camera classes, each a video of its first five images (half a second each).
    let fish_video = work.path().join("fish.y4m");
    let planet_video = work.path().join("planet.y4m");
    y4m(&class_images("fish")[..5], 5, &fish_video);
    y4m(&class_images("planet")[..5], 5, &planet_video);
    let tools = class_images("tool");

    let server = start(ServeOptions {
        projects: Some(projects.clone()),
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServeOptions::default()
    })
    .unwrap();
    let url = format!("http://{}/", server.addr());
    let driver = Driver::start(&chromedriver);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut shots = Shots::new();

    runtime.block_on(async {
        // Session 1: a new project, the fish class from the camera.
        let client = session(&driver, &chromium, &fish_video, &downloads).await;
        client.goto(&url).await.unwrap();
        until(
            &client,
            30,
            "the page",
            "return document.getElementById('projects') !== null;",
        )
        .await;
        shots.take(&client, "studio").await;
        type_into(&client, "new-name", "stamps").await;
        click(&client, "create").await;
        until(
            &client,
            30,
            "the new project",
            "return !document.getElementById('project').hidden;",
        )
        .await;
        shots.take(&client, "project-created").await;
        add_class(&client, "fish").await;
        record_burst(&client, "fish", Duration::from_millis(2500)).await;
        let fish = examples_shown(&client, "fish", 5).await;
        shots.take(&client, "fish-from-camera").await;

        // A sound project gets a 1 s clip from the (fake) microphone, stored as a WAV.
        type_into(&client, "new-name", "words").await;
        client
            .find(Locator::Css("#new-base option[value='speech-embedding']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        click(&client, "create").await;
        until(
            &client,
            30,
            "the sound project",
            "return document.getElementById('title').textContent.startsWith('words ');",
        )
        .await;
        add_class(&client, "yes").await;
        click(&client, "mic").await;
        examples_shown(&client, "yes", 1).await;
        shots.take(&client, "microphone-clip").await;
        let clips: Vec<PathBuf> = std::fs::read_dir(projects.join("words/yes"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(clips.len(), 1);
        let clip = hound::WavReader::open(&clips[0]).unwrap();
        let seconds = clip.duration() as f64 / clip.spec().sample_rate as f64;
        assert!((seconds - 1.0).abs() < 0.01, "a 1 s clip, not {seconds} s");
        assert_eq!(clip.spec().channels, 1);
        let peak = clip
            .into_samples::<i16>()
            .map(|s| s.unwrap().unsigned_abs())
            .max()
            .unwrap();
        assert!(
            peak > 1000,
            "the clip holds the fake microphone's speech (peak {peak})"
        );
        client.close().await.unwrap();

        // Session 2: the same project, the planet class from another camera video, the tool
        // class by upload.
        let client = session(&driver, &chromium, &planet_video, &downloads).await;
        open_project(&client, &url, "stamps").await;
        add_class(&client, "planet").await;
        record_burst(&client, "planet", Duration::from_millis(2500)).await;
        let planet = examples_shown(&client, "planet", 5).await;
        add_class(&client, "tool").await;
        let upload: Vec<String> = tools[..tools.len() - 2]
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        client
            .find(Locator::Id("upload-files"))
            .await
            .unwrap()
            .send_keys(&upload.join("\n"))
            .await
            .unwrap();
        let tool = examples_shown(&client, "tool", upload.len()).await;
        assert_eq!(tool, upload.len(), "every uploaded tool is one example");
        shots.take(&client, "three-classes").await;
        // What the page shows is what is stored, as `graft train` reads it.
        for (class, n) in [("fish", fish), ("planet", planet), ("tool", tool)] {
            let stored = std::fs::read_dir(projects.join("stamps").join(class))
                .unwrap()
                .count();
            assert_eq!(stored, n, "{class}: stored examples");
        }

        // Train; the curves and the confusion matrix come over server-sent events.
        click(&client, "train").await;
        until(
            &client,
            600,
            "training to finish",
            "const s = document.getElementById('train-state').textContent;
             if (s.startsWith('failed')) return s;
             return s === 'done' && document.querySelector('#confusion table') !== null;",
        )
        .await;
        let state = client
            .execute(
                "return document.getElementById('train-state').textContent",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(state, json!("done"));
        let accuracy = client
            .execute(
                "return parseFloat(document.querySelector('#confusion b').textContent);",
                vec![],
            )
            .await
            .unwrap()
            .as_f64()
            .unwrap();
        assert!(accuracy >= 80.0, "validation accuracy {accuracy} %");
        let cells: Vec<u64> = serde_json::from_value(
            client
                .execute(
                    "return Array.from(document.querySelectorAll('#confusion td.cell'), \
                     (td) => parseInt(td.textContent));",
                    vec![],
                )
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(cells.len(), 9, "a 3 x 3 confusion matrix");
        let per_class = client
            .execute(
                "return Array.from(document.querySelectorAll('table.per-class tr th:first-child'), \
                 (th) => th.textContent);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(per_class, json!(["class", "fish", "planet", "tool"]));
        shots.take(&client, "trained").await;

        // A cell opens its examples: the tool row's diagonal cell shows as many as it counts.
        let tool_hits = cells[8];
        assert!(tool_hits > 0);
        client
            .find(Locator::Css(
                "#confusion td.cell[data-true='2'][data-predicted='2']",
            ))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let shown = until(
            &client,
            30,
            "the cell's examples",
            &format!(
                "const n = document.querySelectorAll('#cell img').length;
                 return n >= {tool_hits} ? n : null;"
            ),
        )
        .await;
        assert_eq!(shown, json!(tool_hits));
        shots.take(&client, "confusion-cell").await;

        // The live test: a tool the model did not see, then a frame of the planet camera.
        let unseen = &tools[tools.len() - 1];
        client
            .find(Locator::Id("test-file"))
            .await
            .unwrap()
            .send_keys(&unseen.display().to_string())
            .await
            .unwrap();
        let top = top_bar(&client).await;
        assert!(top.starts_with("tool "), "unseen tool: {top}");
        shots.take(&client, "test-upload").await;
        client
            .execute("document.getElementById('bars').innerHTML = '';", vec![])
            .await
            .unwrap();
        click(&client, "test-camera").await;
        let top = top_bar(&client).await;
        assert!(top.starts_with("planet "), "planet frame: {top}");
        shots.take(&client, "test-camera").await;

        // The ONNX export, downloaded by the browser.
        click(&client, "download-onnx").await;
        let file = downloads.join("stamps.onnx");
        let deadline = Instant::now() + Duration::from_secs(300);
        while !file.is_file() {
            assert!(
                Instant::now() < deadline,
                "no download at {}",
                file.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        shots.take(&client, "downloaded").await;
        client.close().await.unwrap();
    });
    drop(driver);

    // The downloaded export answers like the studio did, in tract.
    let engine = EngineOptions {
        backend: Backend::Tract,
        ..EngineOptions::default()
    };
    let exported = ExportedClassifier::load(&downloads.join("stamps.onnx"), &engine).unwrap();
    assert_eq!(exported.labels(), ["fish", "planet", "tool"]);
    let unseen = std::fs::read(&tools[tools.len() - 1]).unwrap();
    let answer = exported.predict_bytes(&unseen, "tool.png", 3).unwrap();
    assert_eq!(answer.label, "tool");
    server.stop().unwrap();
}
