//! `graft convert`: other frameworks' files to safetensors / ONNX.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use graft::task::{self, ConvertOptions, Format};
use serde_json::json;

use super::Ui;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
pub struct ConvertArgs {
    /// Print the operators (TF ops, Keras layer classes, TFLite builtins) each converter
    /// translates; a model that uses any other is refused with the missing ones listed.
    #[arg(long)]
    pub list_ops: bool,
    #[command(subcommand)]
    pub command: Option<ConvertCommand>,
}

#[derive(Subcommand)]
pub enum ConvertCommand {
    /// A PyTorch checkpoint (legacy or zip `torch.save`) to safetensors, read without running any
    /// code from the file.
    Torch {
        /// The checkpoint (.pth / .pt / .bin).
        input: PathBuf,
        /// The safetensors file to write.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// A TF.js model (layers or graph model: `model.json` with its weight shards beside it) to ONNX.
    Tfjs {
        /// The model.json file.
        input: PathBuf,
        /// The ONNX file to write.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// A TensorFlow 1 frozen graph (`GraphDef` protobuf, `.pb`) to ONNX, through the same TF op
    /// translation as TF.js graph models.
    Tf {
        /// The .pb file.
        input: PathBuf,
        /// The ONNX file to write.
        #[arg(short, long)]
        out: PathBuf,
        /// Tensors to keep as outputs (`node` or `node:k`, comma-separated or repeated); only
        /// what they need is converted. Default: every tensor nothing consumes.
        #[arg(long, value_delimiter = ',')]
        outputs: Vec<String>,
    },
    /// A TFLite model (flatbuffer) to ONNX.
    Tflite {
        /// The .tflite file.
        input: PathBuf,
        /// The ONNX file to write.
        #[arg(short, long)]
        out: PathBuf,
    },
}

pub fn run(args: ConvertArgs, ui: Ui) -> Result<()> {
    let Some(command) = args.command else {
        if !args.list_ops {
            anyhow::bail!("give a format to convert from (torch, tfjs, tf, tflite) or --list-ops");
        }
        let formats = task::supported_ops();
        for (format, ops) in &formats {
            ui.say(format!("{format} ({} ops):", ops.len()));
            for line in ops.chunks(8) {
                ui.say(format!("  {}", line.join(" ")));
            }
        }
        let formats: serde_json::Map<String, serde_json::Value> = formats
            .into_iter()
            .map(|(format, ops)| (format.to_string(), json!(ops)))
            .collect();
        ui.finish(json!({ "ops": formats }));
        return Ok(());
    };
    let mut options = ConvertOptions::default();
    let (format, input, out) = match command {
        ConvertCommand::Torch { input, out } => (Format::Torch, input, out),
        ConvertCommand::Tfjs { input, out } => (Format::Tfjs, input, out),
        ConvertCommand::Tf {
            input,
            out,
            outputs,
        } => {
            options.outputs = outputs;
            (Format::Tf, input, out)
        }
        ConvertCommand::Tflite { input, out } => (Format::Tflite, input, out),
    };
    let c = task::convert(format, &input, &out, &options)?;
    match c.tensors {
        Some(n) => ui.say(format!("wrote {n} tensors to {}", c.out.display())),
        None => ui.say(format!(
            "wrote {} ({} bytes): inputs {:?}, outputs {:?}; `graft inspect` lists cut points",
            c.out.display(),
            c.bytes,
            c.inputs,
            c.outputs
        )),
    }
    ui.finish(match c.tensors {
        Some(n) => json!({ "tensors": n, "out": c.out }),
        None => json!({ "out": c.out, "inputs": c.inputs, "outputs": c.outputs }),
    });
    Ok(())
}
