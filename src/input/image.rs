//! Image input.
