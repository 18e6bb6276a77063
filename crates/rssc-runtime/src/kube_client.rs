//! The Kubernetes client of both binaries, with a client-side request rate limit (QPS and
//! burst, as client-go has) so a 1,000-runner burst neither starves nor floods the API server.

use std::{
    future::Future,
    num::NonZeroU32,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use clap::Args;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::{Client, Config, client::ClientBuilder};
use tower::{Layer, Service};

/// Kubernetes client flags.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct KubeArgs {
    /// Sustained Kubernetes API requests per second; 0 turns the client-side limit off.
    #[arg(long, env = "RSSC_KUBE_QPS", default_value_t = 500)]
    pub kube_qps: u32,
    /// Requests that may go at once above the sustained rate (at least the QPS).
    #[arg(long, env = "RSSC_KUBE_BURST", default_value_t = 1000)]
    pub kube_burst: u32,
}

impl Default for KubeArgs {
    fn default() -> Self {
        Self {
            kube_qps: 500,
            kube_burst: 1000,
        }
    }
}

impl KubeArgs {
    /// The token-bucket quota these flags describe; `None` when unlimited.
    pub fn quota(&self) -> Option<Quota> {
        let qps = NonZeroU32::new(self.kube_qps)?;
        let burst = NonZeroU32::new(self.kube_burst.max(self.kube_qps)).unwrap_or(qps);
        Some(Quota::per_second(qps).allow_burst(burst))
    }
}

/// A client from the in-cluster config or the kubeconfig, limited as `args` says.
pub async fn client(args: &KubeArgs) -> Result<Client, kube::Error> {
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    client_for(config, args)
}

/// A client for `config`, limited as `args` says.
pub fn client_for(config: Config, args: &KubeArgs) -> Result<Client, kube::Error> {
    let builder = ClientBuilder::try_from(config)?;
    Ok(match args.quota() {
        Some(quota) => builder.with_layer(&RateLimitLayer::new(quota)).build(),
        None => builder.build(),
    })
}

/// Holds each request until the shared token bucket has a token for it.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl RateLimitLayer {
    /// A layer allowing `quota`.
    pub fn new(quota: Quota) -> Self {
        Self {
            limiter: Arc::new(RateLimiter::direct(quota)),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            limiter: self.limiter.clone(),
            waiting: None,
            permitted: false,
        }
    }
}

/// The service [`RateLimitLayer`] wraps around kube's stack: it is not ready until a token is
/// available, so kube's request buffer queues requests instead of sending them.
pub struct RateLimited<S> {
    inner: S,
    limiter: Arc<DefaultDirectRateLimiter>,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    permitted: bool,
}

impl<S, R> Service<R> for RateLimited<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.permitted {
            if self.limiter.check().is_ok() {
                self.permitted = true;
            } else {
                let limiter = self.limiter.clone();
                let waiting = self
                    .waiting
                    .get_or_insert_with(|| Box::pin(async move { limiter.until_ready().await }));
                if waiting.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.waiting = None;
                self.permitted = true;
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // Each call spends the token poll_ready took.
        self.permitted = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        time::{Duration, Instant},
    };

    use tower::ServiceExt;

    use super::*;

    #[test]
    fn zero_qps_means_unlimited_and_burst_is_at_least_the_rate() {
        let unlimited = KubeArgs {
            kube_qps: 0,
            kube_burst: 10,
        };
        assert!(unlimited.quota().is_none());
        let small_burst = KubeArgs {
            kube_qps: 50,
            kube_burst: 5,
        };
        assert_eq!(small_burst.quota().unwrap().burst_size().get(), 50);
        assert_eq!(KubeArgs::default().quota().unwrap().burst_size().get(), 1000);
    }

    #[tokio::test]
    async fn requests_beyond_the_burst_wait_for_the_rate() {
        // 20 per second with a burst of 5: the first 5 pass at once, the next 5 need ~250 ms.
        let quota = Quota::per_second(NonZeroU32::new(20).unwrap()).allow_burst(NonZeroU32::new(5).unwrap());
        let mut service = RateLimitLayer::new(quota)
            .layer(tower::service_fn(|n: u32| async move { Ok::<_, Infallible>(n) }));
        let start = Instant::now();
        for n in 0..5 {
            assert_eq!(service.ready().await.unwrap().call(n).await.unwrap(), n);
        }
        let burst = start.elapsed();
        assert!(
            burst < Duration::from_millis(100),
            "the burst passes at once ({burst:?})"
        );
        for n in 5..10 {
            service.ready().await.unwrap().call(n).await.unwrap();
        }
        let limited = start.elapsed();
        assert!(
            limited >= Duration::from_millis(200),
            "five more requests at 20/s take about 250 ms ({limited:?})"
        );
    }
}
