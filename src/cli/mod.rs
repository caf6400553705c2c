//! The `graft` command line: one thin file per verb that parses its flags (derived from the
//! library's option structs), calls one function of [`graft::task`] (or the module that owns the
//! job) and prints the result.

mod args;
mod convert;
mod demo;
mod doctor;
mod engine;
mod export;
mod inspect;
mod knn;
mod listen;
mod pose;
mod predict;
mod report;
#[cfg(feature = "serve")]
mod serve;
mod train;
mod ui;
mod zoo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use ui::Ui;

/// graft: train a classifier on your own examples on top of a pretrained model.
#[derive(Parser)]
#[command(name = "graft", version, about, long_about = None)]
struct Cli {
    /// Print nothing but errors (no progress bars, no tables).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print the result as one JSON object on stdout (the last line).
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    limits: graft::limits::Limits,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train, evaluate, save, predict, export and build a KNN index on the shipped demo images.
    Demo(graft::task::demo::DemoOptions),
    /// Train a transfer recognizer on a folder of class folders.
    Train(train::TrainArgs),
    /// Evaluate a saved recognizer on another labelled folder.
    Eval(predict::EvalArgs),
    /// Check a labelled folder before training: near-duplicates (and those split across training
    /// and validation), likely mislabels, outliers, small or unbalanced classes, unreadable and
    /// tiny files.
    Doctor(doctor::DoctorArgs),
    /// Write one self-contained HTML report of a recognizer on a labelled folder: metrics, plots,
    /// and the examples it gets wrong or is least sure of.
    Report(report::ReportArgs),
    /// Classify files with a saved recognizer.
    Predict(predict::PredictArgs),
    /// Find the words a speech recognizer knows in a long recording.
    Listen(listen::ListenArgs),
    /// Find the 17 body keypoints of the person in images (MoveNet).
    Pose(pose::PoseArgs),
    /// Write base + head as one ONNX file.
    Export(export::ExportArgs),
    /// Show a model's inputs, outputs, operators and candidate cut points.
    Inspect(inspect::InspectArgs),
    /// Convert another framework's model file (`--list-ops`: the operators each converter reads).
    Convert(convert::ConvertArgs),
    /// Base models known to graft.
    #[command(subcommand)]
    Zoo(zoo::ZooCommand),
    /// K-nearest-neighbour classifier over embeddings (no training).
    #[command(subcommand)]
    Knn(knn::KnnCommand),
    /// Which inference engine runs base models here (`engine install`: fetch ONNX Runtime).
    Engine(engine::EngineArgs),
    /// Serve recognizers and KNN indexes over HTTP (predictions, metrics, hot reload of folders).
    #[cfg(feature = "serve")]
    Serve(graft::serve::ServeOptions),
}

/// A failure whose details are already in the verb's JSON result (e.g. some files could not be
/// classified): the exit code says it, no second JSON object is printed.
#[derive(Debug)]
pub struct AlreadyReported(pub String);

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AlreadyReported {}

/// Runs the CLI; errors are printed (and, with `--json`, given as `{"error": ...}`), never panics.
pub fn run() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let command = Cli::command().long_version(long_version());
    let cli = match command
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => return refuse_arguments(e),
    };
    quiet_gpu_drivers();
    graft::limits::set(cli.limits.clone());
    let ui = Ui {
        quiet: cli.quiet,
        json: cli.json,
    };
    let result = match cli.command {
        Command::Demo(a) => demo::run(a, ui),
        Command::Train(a) => train::run(a, ui),
        Command::Eval(a) => predict::eval(a, ui),
        Command::Report(a) => report::run(a, ui),
        Command::Doctor(a) => doctor::run(a, ui),
        Command::Predict(a) => predict::run(a, ui),
        Command::Listen(a) => listen::run(a, ui),
        Command::Pose(a) => pose::run(a, ui),
        Command::Export(a) => export::run(a, ui),
        Command::Inspect(a) => inspect::run(a, ui),
        Command::Convert(c) => convert::run(c, ui),
        Command::Zoo(c) => zoo::run(c, ui),
        Command::Knn(c) => knn::run(c, ui),
        Command::Engine(a) => engine::run(a, ui),
        #[cfg(feature = "serve")]
        Command::Serve(o) => serve::run(o, ui),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if ui.json && e.downcast_ref::<AlreadyReported>().is_none() {
                ui::out(&serde_json::json!({ "error": format!("{e:#}") }).to_string());
            }
            ExitCode::FAILURE
        }
    }
}

/// `graft --version`: graft's version and the engine `--backend auto` would use (found from the
/// files present, without loading or fetching anything; `graft engine` loads it).
fn long_version() -> String {
    let engine = match graft::base::find_library(None) {
        Ok(Some(library)) if cfg!(feature = "onnxruntime") => format!(
            "ONNX Runtime, {} ({:?})",
            library.path.display(),
            library.origin
        ),
        _ => format!(
            "tract (no ONNX Runtime library found; `{}` gets it)",
            graft::base::INSTALL_COMMAND
        ),
    };
    format!(
        "{}\nengine (--backend auto): {engine}\nONNX Runtime graft is tested with: {}",
        env!("CARGO_PKG_VERSION"),
        graft::base::ORT_VERSION
    )
}

/// Help and version go to stdout with success; a flag value the library refuses (an unknown
/// device, a malformed number) is an error like any other (exit 1, and a JSON object with
/// `--json`); other usage errors keep clap's message and exit code.
fn refuse_arguments(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            let _ = e.print();
            if std::env::args().any(|a| a == "--json") {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or_default();
                let msg = first.strip_prefix("error: ").unwrap_or(first);
                ui::out(&serde_json::json!({ "error": msg }).to_string());
            }
            ExitCode::FAILURE
        }
        _ => {
            let _ = e.print();
            ExitCode::from(2)
        }
    }
}

/// Mesa's Vulkan drivers print "XDG_RUNTIME_DIR is invalid" on every adapter probe when the
/// variable is unset (headless machines, CI); give them a private folder, as a login session would.
/// Runs before any thread is started.
fn quiet_gpu_drivers() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    let dir = std::env::temp_dir().join(format!("graft-runtime-{user}"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    }
    if dir.is_dir() {
        // No other thread exists yet, so changing the environment is sound.
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}
