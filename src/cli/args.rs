//! Arguments several verbs share: which base to use, how to train the head, where the cache is.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use graft::base::{Backend, BaseModel, BaseOptions};
use graft::embeddings::BaseRef;
use graft::gpu::DeviceChoice;
use graft::head::Optimizer;
use graft::train::TrainOptions;

/// Which frozen base turns examples into embeddings.
#[derive(Args, Clone, Debug)]
pub struct BaseArgs {
    /// A zoo name (see `graft zoo list`) or an ONNX file.
    #[arg(long, default_value = "efficientnet-lite0")]
    pub base: String,
    /// Tensor (or node) to cut the base at; default: the zoo's embedding, or the input of the final
    /// classifier layer of an ONNX file.
    #[arg(long)]
    pub cut: Option<String>,
    /// For an ONNX file: per-channel mean subtracted from 0..255 pixels, "R,G,B" or one number.
    #[arg(long)]
    pub mean: Option<String>,
    /// For an ONNX file: per-channel divisor of 0..255 pixels, "R,G,B" or one number.
    #[arg(long)]
    pub std: Option<String>,
    /// Do not read or write the embedding cache.
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

impl BaseArgs {
    /// Opens the base as asked.
    pub fn open(&self) -> Result<BaseModel> {
        let mean = self.mean.as_deref().map(parse_triple).transpose()?;
        let std = self.std.as_deref().map(parse_triple).transpose()?;
        let options = BaseOptions {
            cut: self.cut.clone(),
            ..self.backend.options()
        };
        Ok(BaseModel::open_with(&self.base, &options, mean, std)?)
    }

    /// The embedding cache root, unless `--no-cache`.
    pub fn cache(&self) -> Result<Option<PathBuf>> {
        if self.no_cache {
            return Ok(None);
        }
        Ok(Some(graft::zoo::cache_dir()?))
    }
}

/// Which engine runs the base.
#[derive(Args, Clone, Debug)]
pub struct BackendArgs {
    /// Inference engine for the base: tract, or ort (ONNX Runtime; needs a build with
    /// `--features onnxruntime` and its library: $ORT_DYLIB_PATH, or
    /// scripts/fetch-onnxruntime.sh).
    #[arg(long, default_value_t = Backend::Tract)]
    pub backend: Backend,
}

impl BackendArgs {
    /// Base options that name only the engine.
    pub fn options(&self) -> BaseOptions {
        BaseOptions {
            backend: self.backend,
            ..BaseOptions::default()
        }
    }

    /// Reopens the base a recognizer or index was made with, on this engine.
    pub fn reopen(&self, reference: &BaseRef) -> Result<BaseModel> {
        Ok(BaseModel::from_ref_with(reference, &self.options())?)
    }

    /// Opens a zoo model or ONNX file with its own cut and preprocessing, on this engine.
    pub fn open(&self, name_or_path: &str) -> Result<BaseModel> {
        Ok(BaseModel::open_with(
            name_or_path,
            &self.options(),
            None,
            None,
        )?)
    }
}

fn parse_triple(text: &str) -> Result<[f32; 3]> {
    let values: Vec<f32> = text
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("'{text}' is not a number or R,G,B"))?;
    match values[..] {
        [v] => Ok([v; 3]),
        [r, g, b] => Ok([r, g, b]),
        _ => bail!("'{text}': give one number or three (R,G,B)"),
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OptimizerName {
    Sgd,
    Adam,
    Rmsprop,
}

/// How to train the head; every default comes from [`TrainOptions::default`].
#[derive(Args, Clone, Debug)]
pub struct HeadArgs {
    /// Maximum passes over the training data.
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    pub epochs: usize,
    /// Examples per optimiser step.
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    pub batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    pub lr: f32,
    /// Update rule (SGD uses --momentum).
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerName,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// L2 weight decay.
    #[arg(long, default_value_t = TrainOptions::default().weight_decay)]
    pub weight_decay: f32,
    /// Width of a hidden ReLU layer (repeat for more layers); none: softmax regression.
    #[arg(long)]
    pub hidden: Vec<usize>,
    /// Dropout on hidden activations, in [0, 1).
    #[arg(long, default_value_t = TrainOptions::default().dropout)]
    pub dropout: f32,
    /// Label smoothing, in [0, 1).
    #[arg(long, default_value_t = TrainOptions::default().label_smoothing)]
    pub label_smoothing: f32,
    /// Weight classes by inverse frequency.
    #[arg(long)]
    pub balance: bool,
    /// Stop after this many epochs without a lower validation loss (0: never stop early).
    #[arg(long, default_value_t = TrainOptions::default().patience.unwrap_or(0))]
    pub patience: usize,
    /// Train on the raw embeddings; by default they are centred and rescaled for training (the
    /// saved head still takes raw embeddings).
    #[arg(long)]
    pub no_standardize: bool,
    /// Seed for the split, the initial weights, shuffling and dropout.
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Where the maths runs.
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// auto (a hardware GPU if there is one, else the CPU), cpu, or gpu (any GPU, software ones
    /// included). Default: $GRAFT_DEVICE, else auto.
    #[arg(long)]
    pub device: Option<String>,
}

impl DeviceArgs {
    /// The device asked for by the flag or the environment.
    pub fn choice(&self) -> Result<DeviceChoice> {
        let explicit = self.device.as_deref().map(str::parse).transpose()?;
        Ok(DeviceChoice::resolve(explicit)?)
    }
}

impl HeadArgs {
    /// The training options these flags describe.
    pub fn options(&self) -> TrainOptions {
        let optimizer = match self.optimizer {
            OptimizerName::Sgd => Optimizer::Sgd {
                momentum: self.momentum,
            },
            OptimizerName::Adam => Optimizer::adam(),
            OptimizerName::Rmsprop => Optimizer::rmsprop(),
        };
        TrainOptions {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.lr,
            optimizer,
            weight_decay: self.weight_decay,
            hidden: self.hidden.clone(),
            dropout: self.dropout,
            label_smoothing: self.label_smoothing,
            balance: self.balance,
            patience: (self.patience > 0).then_some(self.patience),
            seed: self.seed,
            standardize: !self.no_standardize,
        }
    }
}
