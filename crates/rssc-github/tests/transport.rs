//! Transport settings against the fake: HTTP proxy with credentials and a no-proxy list, HTTPS
//! through a CONNECT proxy, and extra root CAs for a TLS fake with a test-only certificate.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rssc_github::{ActionsClient, ClientOptions, Credentials, Error, GitHubConfig, ProxyConfig, Secret};
use rssc_sim_github::{FakeGitHub, TlsFiles};

#[derive(Default)]
struct ProxyStats {
    forwarded: AtomicUsize,
    tunnels: AtomicUsize,
    rejected: AtomicUsize,
}

/// A loopback forward proxy requiring `Proxy-Authorization: Basic user:pass`; it forwards
/// absolute-form HTTP requests and tunnels CONNECT.
async fn start_proxy(user: &'static str, pass: &'static str) -> (SocketAddr, Arc<ProxyStats>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ProxyStats::default());
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let st = stats.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (st, expected, http) = (st.clone(), expected.clone(), http.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (st, expected, http) = (st.clone(), expected.clone(), http.clone());
                    async move {
                        let auth = req
                            .headers()
                            .get("proxy-authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        if auth != expected {
                            st.rejected.fetch_add(1, Ordering::SeqCst);
                            let mut r = Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = StatusCode::PROXY_AUTHENTICATION_REQUIRED;
                            return Ok::<_, std::convert::Infallible>(r);
                        }
                        if req.method() == Method::CONNECT {
                            st.tunnels.fetch_add(1, Ordering::SeqCst);
                            let target = req.uri().authority().map(|a| a.to_string()).unwrap_or_default();
                            tokio::spawn(async move {
                                if let Ok(upgraded) = hyper::upgrade::on(req).await
                                    && let Ok(mut server) = tokio::net::TcpStream::connect(target).await
                                {
                                    let mut client = TokioIo::new(upgraded);
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                                }
                            });
                            return Ok(Response::new(Full::new(Bytes::new())));
                        }
                        st.forwarded.fetch_add(1, Ordering::SeqCst);
                        let method = req.method().clone();
                        let uri = req.uri().to_string();
                        let mut headers = req.headers().clone();
                        headers.remove("proxy-authorization");
                        headers.remove("host");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let resp = http
                            .request(method, uri)
                            .headers(headers)
                            .body(body)
                            .send()
                            .await
                            .unwrap();
                        let mut out = Response::builder().status(resp.status());
                        for (k, v) in resp.headers() {
                            if k != "content-length" && k != "transfer-encoding" {
                                out = out.header(k, v);
                            }
                        }
                        let body = resp.bytes().await.unwrap();
                        Ok(out.body(Full::new(body)).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, stats)
}

async fn exercise(client: &ActionsClient) -> Result<(), Error> {
    client.get_runner_group_by_name("Default").await?;
    let ss = make_scale_set(client, "proxied", &[]).await;
    let mut session = client.create_session(ss.id, "me").await?;
    assert!(client.get_message(&mut session, 0, 1).await?.is_none());
    client.delete_session(&session).await?;
    Ok(())
}

fn proxied(fake: &FakeGitHub, proxy: ProxyConfig) -> ActionsClient {
    pat_client(
        fake,
        ClientOptions {
            proxy: Some(proxy),
            ..fast_opts()
        },
    )
}

#[tokio::test]
async fn http_proxy_with_credentials() {
    let fake = start(fast_fake()).await;
    let (addr, stats) = start_proxy("proxy-user", "proxy-pass").await;
    let client = proxied(
        &fake,
        ProxyConfig {
            http_url: Some(format!("http://{addr}")),
            username: Some("proxy-user".into()),
            password: Some(Secret::new("proxy-pass".into())),
            ..Default::default()
        },
    );
    exercise(&client).await.unwrap();
    let forwarded = stats.forwarded.load(Ordering::SeqCst);
    assert_eq!(forwarded, fake.calls().len(), "every call went through the proxy");
    assert!(forwarded >= 6);
}

#[tokio::test]
async fn proxy_credentials_in_the_url_and_wrong_credentials() {
    let fake = start(fast_fake()).await;
    let (addr, stats) = start_proxy("u", "p@ss").await;
    let client = proxied(
        &fake,
        ProxyConfig {
            http_url: Some(format!("http://u:p%40ss@{addr}")),
            ..Default::default()
        },
    );
    client.get_runner_group_by_name("Default").await.unwrap();

    let bad = proxied(
        &fake,
        ProxyConfig {
            http_url: Some(format!("http://{addr}")),
            username: Some("u".into()),
            password: Some(Secret::new("wrong".into())),
            ..Default::default()
        },
    );
    let e = bad.get_runner_group_by_name("Default").await.unwrap_err();
    assert!(matches!(e, Error::UnexpectedStatus { status: 407, .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("wrong"));
    assert!(stats.rejected.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn no_proxy_list_bypasses_the_proxy() {
    let fake = start(fast_fake()).await;
    let (addr, stats) = start_proxy("u", "p").await;
    let client = proxied(
        &fake,
        ProxyConfig {
            http_url: Some(format!("http://{addr}")),
            username: Some("u".into()),
            password: Some(Secret::new("p".into())),
            no_proxy: Some("example.com,127.0.0.1".into()),
            ..Default::default()
        },
    );
    exercise(&client).await.unwrap();
    assert_eq!(stats.forwarded.load(Ordering::SeqCst), 0);
}

fn test_cert() -> (String, String) {
    // Generated per test run; never a real credential.
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

fn tls_client(fake: &FakeGitHub, opts: ClientOptions) -> Result<ActionsClient, Error> {
    let config = GitHubConfig::parse_with(&fake.config_url("octo-org"), false).unwrap();
    ActionsClient::new(config, Credentials::token(Secret::new(PAT.into())).unwrap(), opts)
}

async fn tls_fake() -> (FakeGitHub, String) {
    let (cert, key) = test_cert();
    let fake = FakeGitHub::start_tls(
        fast_fake(),
        TlsFiles {
            cert_chain_pem: cert.clone(),
            private_key_pem: key,
        },
    )
    .await
    .unwrap();
    fake.add_pat(PAT);
    (fake, cert)
}

#[tokio::test]
async fn extra_root_ca_is_trusted_and_required() {
    let (fake, cert) = tls_fake().await;
    assert!(fake.base_url().starts_with("https://"));
    let mut opts = fast_opts();
    opts.retry.max_retries = 1;
    let untrusting = tls_client(&fake, opts.clone()).unwrap();
    let e = untrusting.get_runner_group_by_name("Default").await.unwrap_err();
    assert!(matches!(e, Error::Connection(_)), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    let trusting = tls_client(
        &fake,
        ClientOptions {
            root_ca_pem: vec![cert],
            ..opts
        },
    )
    .unwrap();
    exercise(&trusting).await.unwrap();
}

#[tokio::test]
async fn https_through_a_connect_proxy_with_credentials() {
    let (fake, cert) = tls_fake().await;
    let (addr, stats) = start_proxy("tunnel", "secret").await;
    let opts = ClientOptions {
        root_ca_pem: vec![cert],
        proxy: Some(ProxyConfig {
            https_url: Some(format!("http://{addr}")),
            username: Some("tunnel".into()),
            password: Some(Secret::new("secret".into())),
            ..Default::default()
        }),
        ..fast_opts()
    };
    let client = tls_client(&fake, opts).unwrap();
    exercise(&client).await.unwrap();
    assert!(stats.tunnels.load(Ordering::SeqCst) >= 1);
    assert_eq!(stats.forwarded.load(Ordering::SeqCst), 0);
}
