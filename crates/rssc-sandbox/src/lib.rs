//! The sandbox as a library: the binary's parts, so the benchmarks (crates/rssc-bench) measure
//! runs the same way the sandbox reports them.

pub mod binaries;
pub mod charts;
pub mod cli;
pub mod decisions;
pub mod display;
pub mod endpoints;
pub mod manifests;
pub mod memory;
pub mod observe;
pub mod plan;
pub mod report;
pub mod sandbox;
pub mod stats;
