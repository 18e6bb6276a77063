//! Samples, while a scenario runs, how many runners exist at once: EphemeralRunners not being
//! deleted (the cluster's view) and runner registrations on the fake GitHub (GitHub's view).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::{Api, api::ListParams};
use rssc_api::v1alpha1::EphemeralRunner;
use rssc_sim_github::FakeGitHub;
use tokio::{sync::oneshot, task::JoinHandle};

/// The most runners seen at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peaks {
    /// EphemeralRunners without a deletion timestamp.
    pub runners: usize,
    /// Runner registrations on the fake GitHub.
    pub registrations: usize,
    /// Samples taken.
    pub samples: usize,
}

/// A running sampler; [`PeakSampler::stop`] returns what it saw.
pub struct PeakSampler {
    peaks: Arc<Mutex<Peaks>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// How often the sampler looks (a runner lives for seconds, so nothing meaningful is missed).
const PERIOD: Duration = Duration::from_millis(100);

impl PeakSampler {
    /// Starts sampling `runners` and the fake's registrations.
    pub fn start(runners: Api<EphemeralRunner>, github: Arc<FakeGitHub>) -> Self {
        let peaks = Arc::new(Mutex::new(Peaks::default()));
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn({
            let peaks = peaks.clone();
            async move {
                loop {
                    let registrations = github.with_state(|s| s.runners.len());
                    // A failed list (an injected fault, say) is just a missed sample.
                    let live = runners.list(&ListParams::default()).await.ok().map(|l| {
                        l.items
                            .iter()
                            .filter(|r| r.metadata.deletion_timestamp.is_none())
                            .count()
                    });
                    {
                        let mut p = peaks.lock().unwrap();
                        p.registrations = p.registrations.max(registrations);
                        if let Some(live) = live {
                            p.runners = p.runners.max(live);
                            p.samples += 1;
                        }
                    }
                    tokio::select! {
                        _ = &mut stopped => return,
                        () = tokio::time::sleep(PERIOD) => {}
                    }
                }
            }
        });
        Self {
            peaks,
            stop: Some(stop),
            task,
        }
    }

    /// Stops sampling and returns the peaks.
    pub async fn stop(mut self) -> Peaks {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        *self.peaks.lock().unwrap()
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}
