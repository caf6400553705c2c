//! graft: transfer learning on pretrained models.

pub mod atomic;
pub mod error;
pub mod head;
pub mod input;
pub mod metrics;
pub mod train;

pub use error::{Error, Result};
pub use head::{Dense, Head};
