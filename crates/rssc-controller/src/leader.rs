//! Leader election through a `coordination.k8s.io/v1` Lease, so the controller can run with
//! several replicas: one reconciles, the others wait and take over within a lease duration when
//! it stops renewing.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    chrono::{DateTime, Utc},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tracing::{debug, info, warn};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// Who we are (the Pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews and candidates retry.
    pub renew_every: Duration,
}

/// Whether `holder` may take a lease held by `current` that was last renewed at `renewed`.
pub fn can_take(
    current: Option<&str>,
    holder: &str,
    renewed: Option<DateTime<Utc>>,
    duration: Duration,
    now: DateTime<Utc>,
) -> bool {
    match (current, renewed) {
        (None, _) | (Some(""), _) => true,
        (Some(c), _) if c == holder => true,
        (Some(_), None) => true,
        (Some(_), Some(at)) => (now - at).to_std().is_ok_and(|age| age > duration),
    }
}

/// How soon a failed renewal is tried again.
const RENEW_RETRY: Duration = Duration::from_secs(1);

/// A held lease.
pub struct Leadership {
    api: Api<Lease>,
    config: LeaseConfig,
    /// When the renewal time the Lease holds was taken: the lease runs out a duration later,
    /// however long the write took to land.
    renewed: tokio::time::Instant,
}

impl Leadership {
    /// Waits until this process holds the lease.
    pub async fn acquire(client: Client, config: LeaseConfig) -> Self {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let mut announced = false;
        loop {
            let attempt = tokio::time::Instant::now();
            match try_take(&api, &config).await {
                Ok(true) => {
                    info!(lease = %config.name, identity = %config.identity, "became the leader");
                    return Self {
                        api,
                        config,
                        renewed: attempt,
                    };
                }
                Ok(false) => {
                    if !announced {
                        info!(lease = %config.name, "another replica leads; standing by");
                        announced = true;
                    }
                }
                Err(err) => {
                    warn!(error = %err, lease = %config.name, "cannot read or take the lease; retrying")
                }
            }
            tokio::time::sleep(config.renew_every).await;
        }
    }

    /// Renews the lease until renewal fails for longer than the lease duration (another
    /// replica may lead by then), then returns. A renewal that has not answered when the lease
    /// runs out counts as failed: the client sends throttled requests again after the server's
    /// `Retry-After`, and a renewal waiting on that must not outlast the lease.
    pub async fn hold(&self) {
        let mut last_renewed = self.renewed;
        let mut wait = self.config.renew_every;
        loop {
            tokio::time::sleep(wait).await;
            let attempt = tokio::time::Instant::now();
            let left = self.config.duration.saturating_sub(last_renewed.elapsed());
            let renewal = tokio::time::timeout(left, try_take(&self.api, &self.config))
                .await
                .unwrap_or_else(|_| Err(kube::Error::Service("no answer before the lease ran out".into())));
            match renewal {
                Ok(true) => {
                    last_renewed = attempt;
                    wait = self.config.renew_every;
                }
                Ok(false) => {
                    warn!(lease = %self.config.name, "another replica took the lease");
                    return;
                }
                Err(err) => {
                    // Retried soon, so a few failed writes in a row do not cost the lease.
                    wait = RENEW_RETRY.min(self.config.renew_every);
                    if last_renewed.elapsed() >= self.config.duration {
                        warn!(
                            lease = %self.config.name,
                            error = %err,
                            "could not renew the lease in time; stepping down"
                        );
                        return;
                    }
                    debug!(error = %err, "renewing the lease failed");
                }
            }
        }
    }

    /// Gives the lease up so a standby takes over at once.
    pub async fn release(self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() == Some(self.config.identity.as_str()) {
                spec.holder_identity = None;
                spec.renew_time = None;
                let _ = self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await;
            }
        }
    }
}

/// Takes or renews the lease; false if another holder's lease is still valid.
async fn try_take(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Utc::now();
    let spec = LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(config.duration.as_secs()).unwrap_or(i32::MAX)),
        renew_time: Some(MicroTime(now)),
        ..Default::default()
    };
    match api.get_opt(&config.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    acquire_time: Some(MicroTime(now)),
                    ..spec
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let current = lease.spec.clone().unwrap_or_default();
            let duration = current.lease_duration_seconds.map_or(config.duration, |s| {
                Duration::from_secs(u64::try_from(s).unwrap_or(0))
            });
            let renewed = current.renew_time.map(|t| t.0);
            if !can_take(
                current.holder_identity.as_deref(),
                &config.identity,
                renewed,
                duration,
                now,
            ) {
                return Ok(false);
            }
            let taking_over = current.holder_identity.as_deref() != Some(config.identity.as_str());
            lease.spec = Some(LeaseSpec {
                acquire_time: if taking_over {
                    Some(MicroTime(now))
                } else {
                    current.acquire_time
                },
                lease_transitions: Some(current.lease_transitions.unwrap_or(0) + i32::from(taking_over)),
                ..spec
            });
            // The resourceVersion in `lease` makes this a compare-and-swap: two candidates
            // cannot both win. A conflict only says the Lease changed since it was read, not
            // that someone else holds it: it is an error, so the holder retries (reading the
            // Lease again) until the lease duration runs out instead of stepping down at once.
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::chrono::TimeDelta;

    use super::*;

    #[test]
    fn a_lease_is_taken_when_free_ours_or_expired() {
        let now = Utc::now();
        let d = Duration::from_secs(15);
        assert!(can_take(None, "a", None, d, now));
        assert!(can_take(Some("a"), "a", Some(now), d, now), "renewing our own");
        assert!(
            !can_take(Some("b"), "a", Some(now - TimeDelta::seconds(5)), d, now),
            "b still leads"
        );
        assert!(
            can_take(Some("b"), "a", Some(now - TimeDelta::seconds(20)), d, now),
            "b stopped renewing"
        );
        assert!(can_take(Some(""), "a", Some(now), d, now), "released");
    }
}
