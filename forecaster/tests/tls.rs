//! `[tls]`: every listener speaks TLS with the configured certificate; plain-text and untrusted
//! clients are refused (and counted) without stopping the listener; with `client_ca_file` only
//! clients presenting a certificate of that CA get in; new certificate files are picked up
//! without a restart while a bad pair is refused; the real `presage-agent` ships its metrics
//! over TLS and mutual TLS.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use presage_config::ForecasterConfig;
use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};

/// A private CA that signs server and client certificates, written as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Presage test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let pki = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            ca,
        };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).expect("write CA");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.path("ca.pem")).expect("CA file")
    }

    /// A certificate named `cn` for 127.0.0.1 and localhost (server) or for a client, signed by
    /// the CA: its PEM and its key's PEM.
    fn issue(&self, cn: &str, client: bool) -> (String, String) {
        let names = if client {
            Vec::new()
        } else {
            vec!["127.0.0.1".to_string(), "localhost".to_string()]
        };
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a certificate and key as `<name>.pem` and `<name>-key.pem`, each replaced in one
    /// step (written aside, then renamed).
    fn write(&self, name: &str, (cert, key): &(String, String)) -> (PathBuf, PathBuf) {
        let paths = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}-key.pem")),
        );
        for (path, text) in [(&paths.1, key), (&paths.0, cert)] {
            let aside = path.with_extension("new");
            std::fs::write(&aside, text).expect("write PEM");
            std::fs::rename(&aside, path).expect("replace PEM");
        }
        paths
    }
}

/// A daemon configuration with `[tls]` (`client_ca` for mutual TLS), loaded like a file.
fn config(pki: &Pki, client_ca: bool) -> ForecasterConfig {
    let server = pki.issue("presage-1", false);
    let (cert, key) = pki.write("server", &server);
    let client_ca_line = if client_ca {
        format!(
            "client_ca_file = {:?}\n",
            pki.path("ca.pem").display().to_string()
        )
    } else {
        String::new()
    };
    let source = format!(
        "[server]\notlp_grpc = \"127.0.0.1:0\"\notlp_http = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\n\
         [storage]\ndir = {:?}\n\n\
         [tls]\ncert_file = {:?}\nkey_file = {:?}\n{client_ca_line}reload_interval = \"1s\"\n",
        scratch_dir().display().to_string(),
        cert.display().to_string(),
        key.display().to_string(),
    );
    ForecasterConfig::from_toml(&source, "tls.toml").expect("valid configuration")
}

/// An HTTPS client trusting only the private CA, presenting `identity` (PEM certificate and
/// key) when given; every request opens a new connection.
fn https_client(pki: &Pki, identity: Option<&(String, String)>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&pki.ca_pem()).expect("CA certificate");
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .tls_certs_only([ca])
        .tls_info(true)
        .pool_max_idle_per_host(0);
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    builder.build().expect("https client")
}

/// The DER certificate the server presented for `url`, `None` when the request fails.
async fn served_certificate(client: &reqwest::Client, url: &str) -> Option<Vec<u8>> {
    let res = client.get(url).send().await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.extensions()
        .get::<reqwest::tls::TlsInfo>()?
        .peer_certificate()
        .map(<[u8]>::to_vec)
}

/// The value of a sample of the daemon's `/metrics`, read over HTTPS.
async fn metric(client: &reqwest::Client, http: SocketAddr, sample: &str) -> Option<f64> {
    let text = client
        .get(format!("https://{http}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    sample_value(&text, sample)
}

/// Exports one gauge over OTLP/gRPC with TLS, trusting the private CA (and presenting
/// `identity` when given). TLS is set up here, under tonic, as the agent does.
async fn grpc_export(
    pki: &Pki,
    addr: SocketAddr,
    identity: Option<&(String, String)>,
    name: &str,
) -> Result<(), String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pki.ca_pem()).expect("CA PEM"))
        .expect("CA certificate");
    let builder = ClientConfig::builder_with_provider(presage_config::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("client PEM")],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key PEM"),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connect = tower::service_fn(move |_: tonic::transport::Uri| {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = ServerName::try_from("localhost").expect("server name");
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(10))
        .connect_with_connector(connect)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    MetricsServiceClient::new(channel)
        .export(gauge(name))
        .await
        .map(|_| ())
        .map_err(|e| format!("export: {e}"))
}

/// Waits until a series named `name` can be read through the API.
async fn wait_for_series(client: &reqwest::Client, http: SocketAddr, selector: &str) {
    let url = format!(
        "https://{http}/api/v1/series?match[]={}",
        urlencode(selector)
    );
    eventually(Duration::from_secs(30), selector, || {
        let (client, url) = (client, &url);
        async move {
            let body: Value = get_json(client, url).await?;
            body["data"]
                .as_array()
                .filter(|a| !a.is_empty())
                .map(|_| ())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_speaks_tls_with_the_configured_certificate() {
    let pki = Pki::new();
    let running = common::start(config(&pki, false)).await;
    let client = https_client(&pki, None);
    let http = running.http;

    let res = client
        .get(format!("https://{http}/-/healthy"))
        .send()
        .await
        .expect("HTTPS health check");
    assert!(res.status().is_success(), "{}", res.status());

    // Plain text to a TLS port, and a client that does not trust the CA, are refused; the
    // listener keeps serving and counts them.
    let plain = common::client()
        .get(format!("http://{http}/-/healthy"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let untrusted = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("https://{http}/-/healthy"))
        .send()
        .await;
    assert!(untrusted.is_err(), "a client without the CA must fail");
    eventually(Duration::from_secs(10), "two handshake failures", || {
        let client = &client;
        async move {
            let n = metric(
                client,
                http,
                "presage_tls_handshake_failures_total{listener=\"http\"}",
            )
            .await?;
            (n >= 2.0).then_some(())
        }
    })
    .await;
    let res = client
        .get(format!("https://{http}/-/healthy"))
        .send()
        .await
        .expect("still serving");
    assert!(res.status().is_success());

    // remote_write and OTLP/HTTP over HTTPS.
    let res = client
        .post(format!("https://{http}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(rw_body("tls_rw"))
        .send()
        .await
        .expect("remote_write over HTTPS");
    assert!(res.status().is_success(), "{}", res.status());
    let res = client
        .post(format!("https://{}/v1/metrics", running.otlp_http))
        .header("Content-Type", "application/x-protobuf")
        .body(gauge("tls_otlp_http").encode_to_vec())
        .send()
        .await
        .expect("OTLP/HTTP over HTTPS");
    assert!(res.status().is_success(), "{}", res.status());
    let plain = common::client()
        .post(format!("http://{}/v1/metrics", running.otlp_http))
        .body(gauge("tls_plain").encode_to_vec())
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // OTLP/gRPC over TLS; a plain-text gRPC client is refused.
    grpc_export(&pki, running.otlp_grpc, None, "tls_otlp_grpc")
        .await
        .expect("OTLP/gRPC over TLS");
    let plain = async {
        let channel = Channel::from_shared(format!("http://{}", running.otlp_grpc))
            .ok()?
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .ok()?;
        MetricsServiceClient::new(channel)
            .export(gauge("tls_plain"))
            .await
            .ok()
    };
    assert!(plain.await.is_none(), "plain-text gRPC must be refused");

    for name in ["tls_rw", "tls_otlp_http", "tls_otlp_grpc"] {
        wait_for_series(&client, http, name).await;
    }
    for listener in ["otlp_http", "otlp_grpc"] {
        let sample = format!("presage_tls_handshake_failures_total{{listener=\"{listener}\"}}");
        let n = eventually(Duration::from_secs(10), &sample, || {
            let (client, sample) = (&client, &sample);
            async move { metric(client, http, sample).await.filter(|n| *n >= 1.0) }
        })
        .await;
        assert!(n >= 1.0);
    }

    // The agent over OTLP/HTTP with the CA.
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start_agent(
        dir.path(),
        "agent-tls",
        "http",
        &format!("https://127.0.0.1:{}", running.otlp_http.port()),
        &pki.path("ca.pem"),
        None,
    );
    wait_for_agent(&client, http, &mut agent).await;

    drop(agent);
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ca_requires_client_certificates() {
    let pki = Pki::new();
    let running = common::start(config(&pki, true)).await;
    let http = running.http;
    let client_pair = pki.issue("agent-1", true);
    let (client_cert, client_key) = pki.write("client", &client_pair);

    let anonymous = https_client(&pki, None);
    let res = anonymous
        .get(format!("https://{http}/-/healthy"))
        .send()
        .await;
    assert!(
        res.is_err(),
        "a client without a certificate must be refused"
    );

    // A certificate from another CA is refused too.
    let other = Pki::new();
    let stranger = https_client(&pki, Some(&other.issue("stranger", true)));
    let res = stranger
        .get(format!("https://{http}/-/healthy"))
        .send()
        .await;
    assert!(res.is_err(), "a certificate of another CA must be refused");

    let client = https_client(&pki, Some(&client_pair));
    let res = client
        .get(format!("https://{http}/-/healthy"))
        .send()
        .await
        .expect("mutual TLS");
    assert!(res.status().is_success(), "{}", res.status());

    let refused = grpc_export(&pki, running.otlp_grpc, None, "mtls_anonymous").await;
    assert!(refused.is_err(), "gRPC without a client certificate");
    grpc_export(&pki, running.otlp_grpc, Some(&client_pair), "mtls_grpc")
        .await
        .expect("gRPC with a client certificate");
    wait_for_series(&client, http, "mtls_grpc").await;

    // The agent over OTLP/gRPC with the CA and its client certificate.
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start_agent(
        dir.path(),
        "agent-mtls",
        "grpc",
        &format!("https://localhost:{}", running.otlp_grpc.port()),
        &pki.path("ca.pem"),
        Some((&client_cert, &client_key)),
    );
    wait_for_agent(&client, http, &mut agent).await;

    drop(agent);
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_certificate_files_are_served_without_a_restart() {
    let pki = Pki::new();
    let running = common::start(config(&pki, false)).await;
    let http = running.http;
    let client = https_client(&pki, None);
    let url = format!("https://{http}/-/healthy");
    let first = served_certificate(&client, &url)
        .await
        .expect("the first certificate");

    let second = pki.issue("presage-2", false);
    pki.write("server", &second);
    let second_der = pem_to_der(&second.0);
    assert_ne!(first, second_der);
    eventually(Duration::from_secs(20), "the new certificate", || {
        let (client, url, want) = (&client, &url, &second_der);
        async move { (served_certificate(client, url).await.as_ref() == Some(want)).then_some(()) }
    })
    .await;
    let ok = metric(&client, http, "presage_tls_reloads_total{result=\"ok\"}")
        .await
        .expect("reload counter");
    assert!(ok >= 1.0, "{ok}");
    // Replacing the key before the certificate may have been seen half-way: count from here.
    let errors = metric(&client, http, "presage_tls_reloads_total{result=\"error\"}")
        .await
        .expect("reload error counter");

    // A certificate with a key that is not its own: refused, the current pair stays.
    let third = pki.issue("presage-3", false);
    let mismatched = (third.0.clone(), pki.issue("presage-4", false).1);
    pki.write("server", &mismatched);
    eventually(Duration::from_secs(20), "the refused reload", || {
        let client = &client;
        async move {
            metric(client, http, "presage_tls_reloads_total{result=\"error\"}")
                .await
                .filter(|n| *n > errors)
        }
    })
    .await;
    assert_eq!(
        served_certificate(&client, &url).await.as_ref(),
        Some(&second_der),
        "the previous certificate stays in use"
    );
    // gRPC picks up changes too.
    let fourth = pki.issue("presage-5", false);
    pki.write("server", &fourth);
    eventually(Duration::from_secs(20), "the fourth certificate", || {
        let (client, url, want) = (&client, &url, pem_to_der(&fourth.0));
        async move { (served_certificate(client, url).await == Some(want)).then_some(()) }
    })
    .await;
    grpc_export(&pki, running.otlp_grpc, None, "tls_after_reload")
        .await
        .expect("gRPC after a reload");

    running.shutdown().await.expect("clean shutdown");
}

#[test]
fn check_config_reports_bad_tls_files_at_their_keys() {
    let pki = Pki::new();
    let (cert, _) = pki.write("server", &pki.issue("presage", false));
    let (_, other_key) = pki.write("other", &pki.issue("other", false));
    let path = pki.path("presage.toml");
    std::fs::write(
        &path,
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.display().to_string(),
            other_key.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_presage"))
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("presage runs");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":3:1: `tls.key_file`: ") && stderr.contains("does not belong"),
        "{stderr}"
    );
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("PEM certificate")
        .to_vec()
}

/// Starts the agent with a configuration file for a TLS endpoint.
fn start_agent(
    dir: &Path,
    name: &str,
    protocol: &str,
    endpoint: &str,
    ca: &Path,
    client: Option<(&PathBuf, &PathBuf)>,
) -> Peer {
    let mut config = format!(
        "[agent]\nendpoint = {endpoint:?}\nprotocol = {protocol:?}\ninterval = \"1s\"\n\
         tls_ca_file = {:?}\nstate_dir = {:?}\ntelemetry = \"127.0.0.1:{}\"\nservice_name = {name:?}\n",
        ca.display().to_string(),
        dir.join(format!("{name}-state")).display().to_string(),
        free_port(),
    );
    if let Some((cert, key)) = client {
        config.push_str(&format!(
            "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("agent configuration");
    Peer::spawn_agent(
        name,
        &["--config".to_string(), path.display().to_string()],
        dir,
    )
}

/// Waits until the agent's host metrics can be read through the API; panics with the agent's
/// log after 30s.
async fn wait_for_agent(client: &reqwest::Client, http: SocketAddr, agent: &mut Peer) {
    let url = format!(
        "https://{http}/api/v1/series?match[]={}",
        urlencode(&format!("{{service_name=\"{}\"}}", agent.name))
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        agent.assert_running();
        let body = get_json(client, &url).await;
        if body.is_some_and(|b| b["data"].as_array().is_some_and(|a| !a.is_empty())) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {}'s metrics over TLS; its log:\n{}",
            agent.name,
            agent.output()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
