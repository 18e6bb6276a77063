//! rssc's controller. So far: the pure desired-state logic the reconcilers are built on —
//! runner template resolution, runner Pods and JIT Secrets, the EphemeralRunnerSet scaling plan
//! and the classification of runner Pod outcomes.

pub mod listener;
pub mod merge;
pub mod runner_outcome;
pub mod runner_pod;
pub mod runner_template;
pub mod scale;
