//! graft: transfer learning on pretrained models.

pub mod atomic;
pub mod base;
pub mod error;
pub mod export;
pub mod head;
pub mod input;

pub use error::{Error, Result};
pub use head::{Dense, Head};
