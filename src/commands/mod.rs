//! The bodies of the longer commands, one file each; `main.rs` parses and dispatches.

pub mod backtest;
pub mod demo;
pub mod query;
