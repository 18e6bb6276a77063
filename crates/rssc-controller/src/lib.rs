//! rssc's controller: the reconcilers of AutoscaleSets, EphemeralRunnerSets,
//! EphemeralRunners and RunnerSets, and the pure desired-state
//! logic the others are built on — runner template resolution, runner Pods and JIT Secrets,
//! listener objects, the EphemeralRunnerSet scaling plan and runner Pod outcomes.

pub mod app;
pub mod applied;
pub mod autoscale_set;
pub mod conditions;
pub mod context;
pub mod controllers;
pub mod credentials;
pub mod decision_clock;
pub mod ephemeral_runner;
pub mod ephemeral_runner_set;
pub mod fresh_runners;
pub mod leader;
pub mod lean_runners;
pub mod listener;
pub mod merge;
pub mod metrics;
pub mod outcome_pods;
pub mod problem;
pub mod reconcile;
pub mod runner_expectations;
pub mod runner_outcome;
pub mod runner_pod;
pub mod runner_set;
pub mod runner_support;
pub mod runner_template;
pub mod scale;
pub mod self_removed;
pub mod status_pace;
pub mod trigger_pace;
pub mod version_records;
pub mod writes;
