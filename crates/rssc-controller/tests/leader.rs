//! Leader election against the Kubernetes API (the test server, or the cluster
//! `RSSC_E2E_KUBECONFIG` names), through the fault proxy, with the binary's own client.

mod support;

use std::time::Duration;

use rssc_controller::leader::{Leadership, LeaseConfig};
use rssc_runtime::kube_client::{KubeArgs, client_for};
use support::Target;
use tokio::time::Instant;

/// The client sends a request the API server's flow control rejected again after its
/// `Retry-After`, up to ten times. A holder whose renewals are all rejected so must still step
/// down when its lease runs out, not when the retries give up: by then a standby may lead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_renewals_are_throttled_steps_down_when_its_lease_runs_out() {
    let t = Target::new("lease-throttled").await;
    let proxy = rssc_test_support::fault_proxy::FaultProxy::in_front_of(&t.kubeconfig)
        .await
        .unwrap();
    let mut config = kube::Config::new(proxy.url().parse().unwrap());
    config.default_namespace = t.namespace.clone();
    let client = client_for(config, &KubeArgs::default()).unwrap();
    let lease = LeaseConfig {
        namespace: t.namespace.clone(),
        name: "rssc-lease-test".into(),
        identity: "holder".into(),
        duration: Duration::from_secs(3),
        renew_every: Duration::from_millis(500),
    };
    let leadership = Leadership::acquire(client, lease.clone()).await;
    let acquired = Instant::now();

    // From now on flow control rejects every renewal (429, Retry-After: 1).
    proxy.faults().refuse("update", "leases", 429, 1000);
    tokio::time::timeout(Duration::from_secs(30), leadership.hold())
        .await
        .expect("the holder steps down");
    let held = acquired.elapsed();
    assert!(
        held < lease.duration + Duration::from_secs(1),
        "stepped down {held:?} after taking a lease of {:?}",
        lease.duration
    );
    let throttled = proxy
        .faults()
        .codes("update", "leases")
        .into_iter()
        .filter(|c| *c == 429)
        .count();
    assert!(throttled >= 2, "renewals were sent and throttled ({throttled})");

    // Once it has run out, a standby takes the lease.
    let standby = LeaseConfig {
        identity: "standby".into(),
        ..lease
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        Leadership::acquire(t.client.clone(), standby),
    )
    .await
    .expect("the standby takes over");
}
