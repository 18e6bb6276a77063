//! `scaleset.actions.github.com/v1alpha1`: the four resources and the types they share.

mod autoscale_set;
mod common;
mod ephemeral_runner;
mod ephemeral_runner_set;
mod runner_set;

pub use autoscale_set::*;
pub use common::*;
pub use ephemeral_runner::*;
pub use ephemeral_runner_set::*;
pub use runner_set::*;
