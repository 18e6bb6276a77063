//! The 200-job burst with `maxRunners: 50`, in a test binary of its own: Cargo runs test
//! binaries one after another, so this, the heaviest scenario (200 runner Pods through one
//! controller and one listener), does not share two cores with five other scenarios. Sharing
//! them, it spent more time waiting for the CPU than the fake GitHub waits for a runner before it
//! offers a job again; its assertions stay as strict as the other scenarios'.

use std::time::Duration;

use rssc_api::v1alpha1::EphemeralRunner;
use rssc_e2e::{
    Harness, eventually,
    invariants::{Expect, teardown_and_check},
    peaks::PeakSampler,
    scenario::{apply_sets_and_wait_for_listener, count, queue_jobs, wait_jobs_done},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_200_jobs_never_exceeds_max_runners() {
    let h = Harness::start("burst").await;
    apply_sets_and_wait_for_listener(&h, 0, 50).await;
    let sampler = PeakSampler::start(h.api::<EphemeralRunner>(), h.github.clone());
    let jobs = queue_jobs(&h, 200, Duration::from_secs(1));
    wait_jobs_done(&h, &jobs, Duration::from_secs(300)).await;
    let peaks = sampler.stop().await;
    assert!(
        peaks.runners <= 50 && peaks.registrations <= 50,
        "never more than maxRunners (50) runners: {peaks:?}"
    );
    assert!(
        peaks.runners > 10,
        "the burst scaled out well beyond a handful of runners: {peaks:?}"
    );
    eventually("back to zero runners", || async {
        count::<EphemeralRunner>(&h, "").await == 0
    })
    .await;
    teardown_and_check(h, Expect::jobs(&jobs)).await;
}
