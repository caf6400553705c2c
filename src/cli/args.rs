//! Flags several verbs share that are not a library options struct: which base to open.

use anyhow::Result;
use clap::Args;
use graft::base::{BaseModel, BaseOptions};

use super::Ui;

/// Which frozen base turns examples into embeddings, and how to load it.
#[derive(Args, Clone, Debug)]
pub struct BaseArgs {
    /// A zoo name (see `graft zoo list`), an ONNX file, or a raw base that trains the head from
    /// scratch on the input itself: raw:image:WxH (RGB pixels in 0..1), raw:image:WxH:gray, or
    /// raw:vector:N (N numbers an example, from .npy or CSV files).
    #[arg(long, default_value = graft::task::demo::DEMO_BASE)]
    pub base: String,
    #[command(flatten)]
    pub options: BaseOptions,
}

impl BaseArgs {
    /// Opens the base as asked (building a zoo model first if need be, with progress bars).
    pub fn open(&self, ui: Ui) -> Result<BaseModel> {
        Ok(BaseModel::open_with(
            &self.base,
            &self.options,
            &ui.progress(),
        )?)
    }
}
