//! `graft serve`: the HTTP prediction service ([`graft::serve`]).

use anyhow::Result;
use graft::serve::{self, ServeOptions};

use super::Ui;

pub fn run(options: ServeOptions, ui: Ui) -> Result<()> {
    let server = serve::start(options)?;
    for m in server.models() {
        ui.say(format!(
            "serving '{}' ({} of {} classes on {}, {}) from {}",
            m.name,
            m.kind,
            m.labels.len(),
            m.base.name,
            m.base.engine,
            m.file.display()
        ));
    }
    let addr = server.addr();
    ui.say(format!(
        "listening on http://{addr} (GET /v1/models, POST /v1/models/NAME/predict, /metrics, \
         /v1/openapi.json); Ctrl-C stops"
    ));
    ui.finish(serde_json::json!({ "addr": addr.to_string(), "models": server.models() }));
    server.wait()?;
    ui.say("stopped");
    Ok(())
}
