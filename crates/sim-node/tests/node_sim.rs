//! The node simulator against the Kubernetes API test server, or against a real cluster when
//! `RSSC_E2E_KUBECONFIG` is set: runner pods built by the controller's builders, capacity,
//! OOM kills, evictions, and the real `rssc-listener` binary in a listener pod.

mod support;

use std::{path::PathBuf, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use rssc_api::v1alpha1::{EphemeralRunner, EphemeralRunnerSet, RunnerSet};
use rssc_controller::runner_pod::{JitConfig, jit_secret, runner_pod};
use rssc_sim_github::JobState;
use rssc_sim_node::{
    Fault, ListenerSettings, PodKind,
    config::{SIMULATED_NODE_LABEL, node_names},
};
use serde_json::json;
use support::{Env, GitHub, WAIT, condition, container_status, eventually, plain_pod, start_sim, with_env};

/// Creates an EphemeralRunner named `name` with the labels the controller gives it (so the Pod
/// and Secret have a live owner), then its JIT Secret with `encoded` and its runner Pod, both
/// from the controller's builders.
async fn runner_objects(env: &Env, name: &str, encoded: &str, runner_id: i64, scale_set_id: i64) -> Pod {
    let er = ephemeral_runner(env, name, scale_set_id).await;
    create_jit_secret(env, &er, encoded, runner_id, scale_set_id).await;
    create_runner_pod(env, &er).await
}

/// An EphemeralRunner in the dind container mode's shape, pinned to the test's node.
async fn ephemeral_runner(env: &Env, name: &str, scale_set_id: i64) -> EphemeralRunner {
    // The dind container mode's shape: an init container and a native sidecar.
    let mut spec = json!({
        "restartPolicy": "Never",
        "initContainers": [
            {"name": "init-dind-externals", "image": "ghcr.io/actions/actions-runner:latest",
             "command": ["cp", "-r", "/home/runner/externals/.", "/home/runner/tmpDir/"]},
            {"name": "dind", "image": "docker:dind", "restartPolicy": "Always"}
        ],
        "containers": [{
            "name": "runner", "image": "ghcr.io/actions/actions-runner:latest",
            "command": ["/home/runner/run.sh"]
        }]
    });
    env.pin(&mut spec);
    env.create(json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1",
        "kind": "EphemeralRunner",
        "metadata": {"name": name, "labels": {
            "scaleset.actions.github.com/runnerset": "linux",
            "scaleset.actions.github.com/component": "runner",
            "app.kubernetes.io/managed-by": "rssc"
        }},
        "spec": {
            "runnerTemplate": {"spec": spec},
            "runnerConfig": {
                "autoscaleSetRef": {"name": "linux"},
                "githubConfigURL": "https://github.com/octo-org",
                "scaleSetID": scale_set_id,
                "scaleSetName": "linux"
            }
        }
    }))
    .await
}

/// The runner's JIT Secret, from the controller's builder.
async fn create_jit_secret(
    env: &Env,
    er: &EphemeralRunner,
    encoded: &str,
    runner_id: i64,
    scale_set_id: i64,
) {
    let jit = JitConfig {
        encoded: encoded.to_owned(),
        runner_id,
        runner_name: er.metadata.name.clone().unwrap(),
        scale_set_id,
    };
    let secret = jit_secret(er, &jit).expect("the JIT Secret builds");
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("the JIT Secret is created");
}

/// The runner Pod, from the controller's builder.
async fn create_runner_pod(env: &Env, er: &EphemeralRunner) -> Pod {
    let pod = runner_pod(er, "rssc/test").expect("the runner Pod builds");
    env.pods()
        .create(&PostParams::default(), &pod)
        .await
        .expect("the runner Pod is created")
}

async fn pod_where(env: &Env, name: &str, what: &str, pred: impl Fn(&Pod) -> bool) -> Pod {
    let pods = env.pods();
    eventually(&format!("pod {name}: {what}"), || {
        let pods = pods.clone();
        let name = name.to_owned();
        let pred = &pred;
        async move { pods.get_opt(&name).await.ok().flatten().filter(|p| pred(p)) }
    })
    .await
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn terminated(pod: &Pod, container: &str) -> Option<(i32, String)> {
    let t = container_status(pod, container)?.state?.terminated?;
    Some((t.exit_code, t.reason.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_pod_registers_takes_its_job_and_succeeds() {
    with_env("runner", |env| async move {
        let github = GitHub::start().await;
        let (encoded, runner_id) = github.jit("linux-runner-a").await;
        let job = github.assigned_job(Duration::from_millis(300)).await;
        let sim = start_sim(&env, env.sim_config(), Some(github.fake.clone())).await;
        runner_objects(&env, "linux-runner-a", &encoded, runner_id, github.scale_set_id).await;

        let running = pod_where(&env, "linux-runner-a", "Running and Ready", |p| {
            phase(p) == "Running" || phase(p) == "Succeeded"
        })
        .await;
        if phase(&running) == "Running" {
            assert_eq!(condition(&running, "PodScheduled").unwrap().0, "True");
            assert!(running.status.as_ref().unwrap().pod_ip.is_some());
            assert!(running.status.as_ref().unwrap().start_time.is_some());
        }
        let done = pod_where(&env, "linux-runner-a", "Succeeded", |p| phase(p) == "Succeeded").await;
        assert_eq!(terminated(&done, "runner"), Some((0, "Completed".into())));
        let init = done
            .status
            .as_ref()
            .unwrap()
            .init_container_statuses
            .clone()
            .unwrap();
        let exits: Vec<_> = init
            .iter()
            .map(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| t.exit_code)
            })
            .collect();
        assert_eq!(
            exits,
            [Some(0), Some(0)],
            "init container completed, sidecar stopped: {init:?}"
        );
        assert_eq!(init[1].restart_count, 0);
        assert_eq!(condition(&done, "Ready").unwrap().0, "False");
        assert_eq!(github.job_state(job), Some(JobState::Completed));

        let summary = sim.summary();
        let record = summary
            .pod(&env.ns, "linux-runner-a")
            .expect("the pod is recorded");
        assert_eq!(record.kind, PodKind::Runner);
        let runner = record.runner.as_ref().unwrap();
        assert_eq!(
            (runner.runner_id, runner.job_id, runner.finished),
            (Some(runner_id), Some(job), true)
        );
        assert_eq!(summary.runners_finished(), 1);
        // Watch interruptions are retried; anything else would be a fidelity problem.
        assert!(
            summary.errors.iter().all(|e| e.starts_with("watching pods")),
            "{:?}",
            summary.errors
        );

        // Registered as a Node (the test server may not serve Nodes yet; a real cluster does).
        if !summary.nodes_api_missing {
            let nodes: Api<Node> = Api::all(env.client.clone());
            let node = nodes
                .get(&format!("sim-{}", env.ns))
                .await
                .expect("the node is registered");
            let ready = node.status.unwrap().conditions.unwrap();
            assert!(ready.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            assert_eq!(
                done.spec.as_ref().unwrap().node_name.as_deref(),
                Some(node.metadata.name.as_deref().unwrap())
            );
        }
        sim.wait_until("a lease renewal", WAIT, |s| s.lease_renewals > 0)
            .await
            .unwrap();
        sim.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_with_an_unusable_jit_config_fails() {
    with_env("badjit", |env| async move {
        let github = GitHub::start().await;
        let sim = start_sim(&env, env.sim_config(), Some(github.fake.clone())).await;
        // Pod before Secret: the kubelet cannot configure the container until the Secret exists.
        let er = ephemeral_runner(&env, "linux-runner-bad", github.scale_set_id).await;
        create_runner_pod(&env, &er).await;
        let waiting = pod_where(&env, "linux-runner-bad", "CreateContainerConfigError", |p| {
            container_status(p, "runner")
                .and_then(|c| c.state?.waiting?.reason)
                .is_some_and(|r| r == "CreateContainerConfigError")
        })
        .await;
        let message = container_status(&waiting, "runner")
            .unwrap()
            .state
            .unwrap()
            .waiting
            .unwrap()
            .message;
        assert_eq!(message.as_deref(), Some("secret \"linux-runner-bad\" not found"));
        assert_eq!(phase(&waiting), "Pending");
        create_jit_secret(&env, &er, "bm90LWEtaml0LWNvbmZpZw==", 1, github.scale_set_id).await;
        let failed = pod_where(&env, "linux-runner-bad", "Failed", |p| phase(p) == "Failed").await;
        let (code, reason) = terminated(&failed, "runner").expect("the runner terminated");
        assert_ne!(code, 0);
        assert_eq!(reason, "Error");
        let s = sim.summary();
        let runner = s
            .pod(&env.ns, "linux-runner-bad")
            .unwrap()
            .runner
            .clone()
            .unwrap();
        assert!(runner.error.is_some() && runner.runner_id.is_none(), "{runner:?}");
        assert_eq!(s.runners_failed(), 1);
        sim.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_pods_stay_pending_until_a_slot_frees_and_oom_kills_free_it() {
    with_env("capacity", |env| async move {
        let mut config = env.sim_config();
        config.max_pods = 1;
        let sim = start_sim(&env, config, None).await;
        env.create::<Pod>(plain_pod(&env, "first", "Never")).await;
        pod_where(&env, "first", "Running", |p| phase(p) == "Running").await;
        env.create::<Pod>(plain_pod(&env, "second", "Never")).await;
        let pending = pod_where(&env, "second", "Unschedulable", |p| {
            condition(p, "PodScheduled").is_some_and(|c| c.1.as_deref() == Some("Unschedulable"))
        })
        .await;
        assert_eq!(phase(&pending), "Pending");
        assert!(pending.spec.as_ref().unwrap().node_name.is_none());

        sim.oom_kill(&env.ns, "first").await.expect("first runs");
        let killed = pod_where(&env, "first", "Failed", |p| phase(p) == "Failed").await;
        assert_eq!(terminated(&killed, "main"), Some((137, "OOMKilled".into())));
        let second = pod_where(&env, "second", "Running", |p| phase(p) == "Running").await;
        assert_eq!(condition(&second, "PodScheduled").unwrap().0, "True");
        assert_eq!(condition(&second, "Ready").unwrap().0, "True");

        // A terminated pod is deleted at once; a running one after its containers stop.
        env.pods()
            .delete("second", &DeleteParams::default())
            .await
            .expect("delete");
        eventually("second to be gone", || {
            let pods = env.pods();
            async move {
                pods.get_opt("second")
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                    .then_some(())
            }
        })
        .await;
        sim.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_spread_over_the_nodes_and_wait_when_every_node_is_full() {
    with_env("nodes", |env| async move {
        let mut config = env.sim_config();
        config.node_names = node_names(&env.node_name(), 2);
        config.max_pods = 1;
        let names = config.node_names.clone();
        let sim = start_sim(&env, config, None).await;
        let on_either_node = |name: &str| {
            let mut pod = plain_pod(&env, name, "Never");
            // Either of this test's nodes, so a real cluster's scheduler chooses as ours does.
            pod["spec"]["nodeSelector"] = json!({ SIMULATED_NODE_LABEL: "true" });
            pod["spec"]["affinity"] = json!({"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": names}
                    ]}
                ]}
            }});
            pod
        };
        env.create::<Pod>(on_either_node("first")).await;
        env.create::<Pod>(on_either_node("second")).await;
        let mut used = Vec::new();
        for name in ["first", "second"] {
            let pod = pod_where(&env, name, "Running", |p| phase(p) == "Running").await;
            used.push(
                pod.spec
                    .and_then(|s| s.node_name)
                    .expect("a running pod is bound"),
            );
        }
        used.sort();
        let mut nodes = names.clone();
        nodes.sort();
        assert_eq!(used, nodes, "one pod on each node");

        env.create::<Pod>(on_either_node("third")).await;
        let pending = pod_where(&env, "third", "Unschedulable", |p| {
            condition(p, "PodScheduled").is_some_and(|c| c.1.as_deref() == Some("Unschedulable"))
        })
        .await;
        assert_eq!(phase(&pending), "Pending");
        sim.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_kills_restart_under_restart_policy_always_and_evictions_fail_the_pod() {
    with_env("faults", |env| async move {
        let mut config = env.sim_config();
        config.failures.per_pod.insert("doomed".into(), Fault::Exit(3));
        let sim = start_sim(&env, config, None).await;
        env.create::<Pod>(plain_pod(&env, "restarts", "Always")).await;
        env.create::<Pod>(plain_pod(&env, "evicted", "Always")).await;
        env.create::<Pod>(plain_pod(&env, "doomed", "Never")).await;
        pod_where(&env, "restarts", "Running", |p| phase(p) == "Running").await;
        pod_where(&env, "evicted", "Running", |p| phase(p) == "Running").await;

        sim.oom_kill(&env.ns, "restarts").await.expect("restarts runs");
        let restarted = pod_where(&env, "restarts", "restarted and running", |p| {
            container_status(p, "main").is_some_and(|c| {
                c.restart_count == 1 && c.state.as_ref().is_some_and(|s| s.running.is_some())
            })
        })
        .await;
        let last = container_status(&restarted, "main")
            .unwrap()
            .last_state
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (137, Some("OOMKilled")));
        assert_eq!(phase(&restarted), "Running");

        sim.evict(&env.ns, "evicted").await.expect("evicted runs");
        let evicted = pod_where(&env, "evicted", "Failed", |p| phase(p) == "Failed").await;
        assert_eq!(
            evicted.status.as_ref().unwrap().reason.as_deref(),
            Some("Evicted")
        );
        assert_eq!(condition(&evicted, "DisruptionTarget").unwrap().0, "True");

        let doomed = pod_where(&env, "doomed", "Failed", |p| phase(p) == "Failed").await;
        assert_eq!(terminated(&doomed, "main").map(|t| t.0), Some(3));

        let s = sim
            .wait_until("the summary to show the faults", WAIT, |s| {
                s.phases().get("Failed") == Some(&2)
                    && s.pod(&env.ns, "restarts").is_some_and(|p| p.restarts == 1)
            })
            .await
            .unwrap();
        assert_eq!(
            s.pod(&env.ns, "evicted").unwrap().reason.as_deref(),
            Some("Evicted")
        );
        assert!(sim.oom_kill(&env.ns, "nope").await.is_err());
        sim.stop().await;
    })
    .await;
}

/// Builds the real `rssc-listener` binary (same target directory) and returns its path.
fn build_listener() -> PathBuf {
    let binary = rssc_test_support::binaries::build().join("rssc-listener");
    assert!(
        binary.exists(),
        "rssc-listener was built but {} does not exist",
        binary.display()
    );
    binary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_pod_runs_the_real_binary_scales_and_stops_on_deletion() {
    let binary = build_listener();
    with_env("listener", |env| async move {
        let github = GitHub::start().await;
        let rs: RunnerSet = env
            .create(json!({
                "apiVersion": "scaleset.actions.github.com/v1alpha1",
                "kind": "RunnerSet",
                "metadata": {"name": "linux"},
                "spec": {"autoscaleSetRef": {"name": "linux"}}
            }))
            .await;
        let _ers: EphemeralRunnerSet = env
            .create(json!({
                "apiVersion": "scaleset.actions.github.com/v1alpha1",
                "kind": "EphemeralRunnerSet",
                "metadata": {"name": "linux"},
                "spec": {
                    "replicas": 0,
                    "runnerTemplate": {"spec": {"containers": [{"name": "runner", "image": "r"}]}},
                    "runnerConfig": {
                        "autoscaleSetRef": {"name": "linux"},
                        "githubConfigURL": github.fake.config_url("octo-org"),
                        "scaleSetID": github.scale_set_id,
                        "scaleSetName": "linux"
                    }
                }
            }))
            .await;
        let config = rssc_api::listener_config::ListenerConfig {
            github_config_url: github.fake.config_url("octo-org"),
            scale_set_id: github.scale_set_id,
            scale_set_name: "linux".into(),
            namespace: env.ns.clone(),
            ephemeral_runner_set: "linux".into(),
            config_secret: "linux-listener".into(),
            min_runners: 0,
            max_runners: 5,
            session_owner: format!("{}/linux", env.ns),
            auth: rssc_api::listener_config::ListenerAuth::Token {
                token: support::PAT.into(),
            },
            proxy: None,
            ca_bundle: None,
        };
        let objects = rssc_controller::listener::build(
            &rs,
            &config,
            &rssc_controller::listener::ListenerDefaults {
                image: "ghcr.io/rssc/listener:test".into(),
                log_level: "debug".into(),
                log_format: "text".into(),
                otel_env: Vec::new(),
            },
        )
        .expect("the listener objects build");
        let client = env.client.clone();
        let ns = env.ns.clone();
        let post = PostParams::default();
        Api::namespaced(client.clone(), &ns)
            .create(&post, &objects.config)
            .await
            .expect("config Secret");
        Api::namespaced(client.clone(), &ns)
            .create(&post, &objects.service_account)
            .await
            .expect("ServiceAccount");
        Api::namespaced(client.clone(), &ns)
            .create(&post, &objects.role)
            .await
            .expect("Role");
        Api::namespaced(client.clone(), &ns)
            .create(&post, &objects.role_binding)
            .await
            .expect("RoleBinding");
        // The Deployment's pod template, as the ReplicaSet controller would stamp it out.
        let template = objects.deployment.spec.clone().unwrap().template;
        let mut meta = template.metadata.unwrap_or_default();
        meta.name = Some("linux-listener-0".into());
        meta.namespace = Some(ns.clone());
        let mut spec = serde_json::to_value(template.spec.unwrap()).unwrap();
        env.pin(&mut spec);
        let pod = Pod {
            metadata: meta,
            spec: Some(serde_json::from_value(spec).unwrap()),
            status: None,
        };

        let logs = std::env::temp_dir().join(format!("rssc-sim-node-logs-{}", env.ns));
        let mut sim_config = env.sim_config();
        sim_config.listener = Some(ListenerSettings {
            binary: binary.clone(),
            log_dir: logs.clone(),
            kubeconfig: env.listener_kubeconfig(),
            max_probe_period: Duration::from_millis(200),
        });
        let sim = start_sim(&env, sim_config, Some(github.fake.clone())).await;
        env.pods()
            .create(&post, &pod)
            .await
            .expect("the listener Pod is created");

        let ready = sim
            .wait_until("the listener to be Ready", WAIT, |s| {
                s.pod(&ns, "linux-listener-0")
                    .is_some_and(|p| p.ready || p.exit_code.is_some())
            })
            .await
            .unwrap();
        let record = ready.pod(&ns, "linux-listener-0").unwrap().clone();
        let log_file = record.log_file.clone().expect("a log file");
        assert!(
            record.ready,
            "the listener is not ready: {record:?}\nlog:\n{}",
            std::fs::read_to_string(&log_file).unwrap_or_default()
        );
        assert_eq!(record.kind, PodKind::Listener);
        let api_pod = pod_where(&env, "linux-listener-0", "Ready", |p| {
            condition(p, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await;
        assert_eq!(phase(&api_pod), "Running");

        // A job for the scale set: the listener acquires it and asks for one runner.
        github
            .fake
            .queue_job(rssc_sim_github::JobSpec::for_labels([support::SCALE_SET]));
        let sets: Api<EphemeralRunnerSet> = Api::namespaced(client.clone(), &ns);
        eventually("the listener to write replicas 1", || {
            let sets = sets.clone();
            async move {
                sets.get("linux")
                    .await
                    .ok()
                    .filter(|s| s.spec.replicas == 1)
                    .map(|_| ())
            }
        })
        .await;

        env.pods()
            .delete("linux-listener-0", &DeleteParams::default())
            .await
            .expect("delete the listener Pod");
        let stopped = sim
            .wait_until("the listener to stop", WAIT, |s| {
                s.pod(&ns, "linux-listener-0")
                    .is_some_and(|p| p.exit_code.is_some() && p.deleted)
            })
            .await
            .unwrap();
        let record = stopped.pod(&ns, "linux-listener-0").unwrap();
        if let Some(server) = &env.server {
            // The listener ran as its ServiceAccount: the simulator asked for a token for it.
            let tokens = server
                .faults()
                .requests()
                .into_iter()
                .filter(|r| r.verb == "create" && r.resource.contains("token") && r.name == "linux-listener")
                .count();
            assert!(tokens >= 1, "no TokenRequest for the listener's ServiceAccount");
        }
        assert_eq!(
            record.exit_code,
            Some(0),
            "the listener exits cleanly on SIGTERM: {record:?}"
        );
        eventually("the listener Pod to be gone", || {
            let pods = env.pods();
            async move {
                pods.get_opt("linux-listener-0")
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                    .then_some(())
            }
        })
        .await;
        let log = std::fs::read_to_string(&log_file).expect("the log file");
        assert!(log.contains("rssc-sim-node: starting"), "{log}");
        assert!(log.lines().count() > 1, "the listener logged nothing: {log}");
        sim.stop().await;
        let _ = std::fs::remove_dir_all(&logs);
        let _ = Arc::strong_count(&env);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_external_scheduler_pods_bound_to_the_node_run_and_deletion_is_graceful() {
    with_env("external", |env| async move {
        let mut config = env.sim_config();
        config.scheduling = rssc_sim_node::Scheduling::External;
        let sim = start_sim(&env, config, None).await;
        // The simulator binds nothing itself; it runs what is bound to its node.
        let mut bound = plain_pod(&env, "bound", "Always");
        bound["spec"]["nodeName"] = json!(env.node_name());
        env.create::<Pod>(bound).await;
        let running = pod_where(&env, "bound", "Running and Ready", |p| {
            condition(p, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await;
        assert_eq!(phase(&running), "Running");
        assert_eq!(
            running.status.as_ref().unwrap().host_ip.as_deref(),
            Some("10.0.0.10")
        );

        env.pods()
            .delete("bound", &DeleteParams::default())
            .await
            .expect("delete");
        let s = sim
            .wait_until("the pod to be stopped and deleted", WAIT, |s| {
                s.pod(&env.ns, "bound").is_some_and(|p| p.deleted)
            })
            .await
            .unwrap();
        let record = s.pod(&env.ns, "bound").unwrap();
        assert_eq!(record.exit_code, Some(143), "stopped with SIGTERM: {record:?}");
        eventually("the pod to be gone", || {
            let pods = env.pods();
            async move { pods.get_opt("bound").await.ok().flatten().is_none().then_some(()) }
        })
        .await;
        sim.stop().await;
        let nodes: Api<Node> = Api::all(env.client.clone());
        assert!(
            nodes.get_opt(&env.node_name()).await.unwrap().is_none(),
            "stop removes the Node"
        );
    })
    .await;
}
