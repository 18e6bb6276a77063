//! Names every rssc component agrees on: API group, labels, annotations, finalizers, field
//! managers, condition types and reasons.
//!
//! Keeping them here means a label written by the controller and the selector used by the
//! listener cannot drift apart.

/// The API group of every rssc resource.
pub const GROUP: &str = "scaleset.actions.github.com";
/// The only served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `group/version`, as it appears in `apiVersion`.
pub const API_VERSION: &str = "scaleset.actions.github.com/v1alpha1";

/// Prefix shared by our labels, annotations and finalizers.
pub const PREFIX: &str = "scaleset.actions.github.com/";

/// Label keys put on every object rssc creates.
pub mod labels {
    /// Name of the AutoscaleSet the object serves.
    pub const AUTOSCALE_SET: &str = "scaleset.actions.github.com/autoscaleset";
    /// Name of the RunnerSet the object belongs to.
    pub const RUNNER_SET: &str = "scaleset.actions.github.com/runnerset";
    /// GitHub runner group, made label-safe by [`crate::names::label_value`].
    pub const RUNNER_GROUP: &str = "scaleset.actions.github.com/runner-group";
    /// Runner name as registered with GitHub (equals the EphemeralRunner name).
    pub const RUNNER_NAME: &str = "scaleset.actions.github.com/runner-name";
    /// `idle` or `busy`, kept current on runner Pods for people and schedulers.
    pub const RUNNER_STATE: &str = "scaleset.actions.github.com/runner-state";
    /// Which part of rssc an object is; one of the [`super::components`] values.
    pub const COMPONENT: &str = "scaleset.actions.github.com/component";
    /// Hash of the runner pod template an EphemeralRunner was created from.
    pub const POD_SPEC_HASH: &str = "scaleset.actions.github.com/pod-spec-hash";
    /// Standard label naming the managing tool.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// Value of [`MANAGED_BY`] on everything rssc creates.
    pub const MANAGED_BY_VALUE: &str = "rssc";
}

/// Values of the [`labels::COMPONENT`] label.
pub mod components {
    /// The listener Deployment, its Pod and its RBAC objects.
    pub const LISTENER: &str = "listener";
    /// The listener's configuration Secret.
    pub const LISTENER_CONFIG: &str = "listener-config";
    /// An EphemeralRunnerSet.
    pub const RUNNER_SET: &str = "runner-set";
    /// An EphemeralRunner and its runner Pod.
    pub const RUNNER: &str = "runner";
    /// The JIT configuration Secret of one runner.
    pub const RUNNER_JIT_SECRET: &str = "runner-jit-config";
}

/// Values of the [`labels::RUNNER_STATE`] label.
pub mod runner_states {
    /// Registered and waiting for a job.
    pub const IDLE: &str = "idle";
    /// Running a job; must not be removed.
    pub const BUSY: &str = "busy";
}

/// Annotation keys.
pub mod annotations {
    /// W3C `traceparent` of the job a decision or runner acts for.
    pub const TRACEPARENT: &str = "scaleset.actions.github.com/traceparent";
    /// The EphemeralRunnerSet patch sequence an EphemeralRunner was created for.
    pub const PATCH_SEQUENCE: &str = "scaleset.actions.github.com/patch-sequence";
    /// Set on an EphemeralRunner once GitHub removed its registration, so deleting it does not
    /// ask GitHub again.
    pub const DEREGISTERED: &str = "scaleset.actions.github.com/deregistered";
    /// Hash of everything the listener reads; a change restarts the listener Pod.
    pub const LISTENER_CONFIG_HASH: &str = "scaleset.actions.github.com/listener-config-hash";
}

/// Finalizers.
pub mod finalizers {
    /// On an AutoscaleSet: removes the scale set from GitHub after its runners are gone.
    pub const AUTOSCALE_SET: &str = "scaleset.actions.github.com/finalizer";
    /// On a RunnerSet: drains its runners and stops its listener.
    pub const RUNNER_SET: &str = "scaleset.actions.github.com/runnerset-finalizer";
    /// On an EphemeralRunner: deregisters the runner from GitHub before the object goes.
    pub const RUNNER_REGISTRATION: &str = "scaleset.actions.github.com/runner-registration-finalizer";
}

/// Server-side apply field managers.
pub mod field_managers {
    /// Everything the controller applies.
    pub const CONTROLLER: &str = "rssc-controller";
    /// Replica decisions and job records written by a listener.
    pub const LISTENER: &str = "rssc-listener";
}

/// Condition types used in our status blocks.
pub mod conditions {
    /// The object does what it is for.
    pub const READY: &str = "Ready";
    /// Credentials were read and GitHub accepted them.
    pub const CREDENTIALS_VALID: &str = "CredentialsValid";
    /// The scale set exists on GitHub with the requested name, group and labels.
    pub const SCALE_SET_REGISTERED: &str = "ScaleSetRegistered";
    /// The listener has an open message session and polls.
    pub const LISTENER_READY: &str = "ListenerReady";
    /// GitHub accepts the runner version of the scale set's runner image (AutoscaleSet).
    pub const RUNNER_VERSION_SUPPORTED: &str = "RunnerVersionSupported";
    /// The API server admitted the runner Pods (EphemeralRunner: its Pod; RunnerSet: all of them).
    pub const POD_ADMITTED: &str = "PodAdmitted";
}

/// Condition reasons. CamelCase, stable: dashboards and alerts may match on them.
pub mod reasons {
    /// Everything is in order.
    pub const READY: &str = "Ready";
    /// The referenced credentials Secret does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// The Secret exists but lacks the expected key or its value is unusable.
    pub const SECRET_INVALID: &str = "SecretInvalid";
    /// GitHub rejected the credentials.
    pub const CREDENTIALS_REJECTED: &str = "CredentialsRejected";
    /// `githubConfigURL` is not an enterprise, organization or repository URL.
    pub const INVALID_CONFIG_URL: &str = "InvalidConfigURL";
    /// The named runner group does not exist.
    pub const RUNNER_GROUP_NOT_FOUND: &str = "RunnerGroupNotFound";
    /// GitHub could not be reached or answered with a server error.
    pub const GITHUB_UNREACHABLE: &str = "GitHubUnreachable";
    /// GitHub rate-limited us; the controller waits before trying again.
    pub const RATE_LIMITED: &str = "RateLimited";
    /// The AutoscaleSet a RunnerSet references does not exist.
    pub const AUTOSCALE_SET_NOT_FOUND: &str = "AutoscaleSetNotFound";
    /// The AutoscaleSet is already bound by another RunnerSet.
    pub const AUTOSCALE_SET_IN_USE: &str = "AutoscaleSetInUse";
    /// The RunnerSet's `runnerGroup` differs from the AutoscaleSet's.
    pub const RUNNER_GROUP_MISMATCH: &str = "RunnerGroupMismatch";
    /// The object is being deleted and waits for busy runners to finish.
    pub const DRAINING: &str = "Draining";
    /// Waiting for something else to become ready first.
    pub const PENDING: &str = "Pending";
    /// The merged runner template is not a valid pod template.
    pub const INVALID_TEMPLATE: &str = "InvalidTemplate";
    /// GitHub answered with an error not covered by a more specific reason.
    pub const GITHUB_ERROR: &str = "GitHubError";
    /// The Kubernetes API refused or failed a request.
    pub const KUBERNETES_ERROR: &str = "KubernetesError";
    /// A referenced ConfigMap (such as the CA bundle) does not exist or lacks the key.
    pub const CONFIG_MAP_NOT_FOUND: &str = "ConfigMapNotFound";
    /// GitHub kept labels other than the ones asked for (labels are fixed when a scale set is
    /// created).
    pub const LABELS_NOT_APPLIED: &str = "LabelsNotApplied";
    /// A runner exited with code 7: GitHub no longer accepts the runner version in the image.
    pub const RUNNER_VERSION_DEPRECATED: &str = "RunnerVersionDeprecated";
    /// A ResourceQuota refused a runner Pod; the controller retries with backoff.
    pub const EXCEEDED_QUOTA: &str = "ExceededQuota";
    /// A runner completed a job after an earlier problem.
    pub const RUNNER_SUCCEEDED: &str = "RunnerSucceeded";
    /// A runner's Pod failed after GitHub had removed the runner: it is replaced, not retried.
    pub const RUNNER_DEREGISTERED: &str = "RunnerDeregistered";
}
