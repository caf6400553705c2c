//! npm
