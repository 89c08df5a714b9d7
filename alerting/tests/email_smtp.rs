//! Email delivered to a real SMTP server (aiosmtpd, through `tests/fixtures/smtp_sink.py`),
//! the received message parsed with Python's email package.

mod common;

use std::path::Path;
use std::time::Duration;

use presage_alerting::notify::{self, NotifyError};
use presage_config::{EmailConfig, ReceiverConfig, SecretRef, SmtpTls};
use serde_json::Value;

use common::{Peer, disk_alert, eventually, fixture, free_port, notification};

const INSTALL: &str = "pip install aiosmtpd";

struct Sink {
    peer: Peer,
    port: u16,
    dir: tempfile::TempDir,
}

async fn start_sink(extra: &[&str]) -> Sink {
    let python = common::require_python_module("aiosmtpd", INSTALL);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut args = vec![
        fixture("smtp_sink.py").display().to_string(),
        "--port".to_string(),
        port.to_string(),
        "--dir".to_string(),
        dir.path().display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut peer = Peer::spawn("aiosmtpd", &python, &args, dir.path());
    peer.wait_for_port(port, Duration::from_secs(20)).await;
    Sink { peer, port, dir }
}

fn email_receiver(port: u16, to: &[&str]) -> (ReceiverConfig, EmailConfig) {
    let email = EmailConfig {
        smtp: format!("127.0.0.1:{port}"),
        tls: SmtpTls::None,
        from: "Presage <presage@example.com>".to_string(),
        to: to.iter().map(|s| s.to_string()).collect(),
        username: None,
        password: None,
        subject: None,
        ca_file: None,
        timeout: Duration::from_secs(10),
    };
    let receiver = ReceiverConfig {
        name: "oncall-mail".to_string(),
        email: Some(email.clone()),
        webhook: None,
        alertmanager: None,
        console: None,
    };
    (receiver, email)
}

async fn received(dir: &Path, n: usize) -> Value {
    let path = dir.join(format!("msg-{n}.json"));
    eventually(
        Duration::from_secs(10),
        "the SMTP server to save the message",
        || {
            let path = path.clone();
            async move {
                let text = std::fs::read_to_string(path).ok()?;
                serde_json::from_str(&text).ok()
            }
        },
    )
    .await
}

fn parts_of<'a>(msg: &'a Value, content_type: &str) -> Vec<&'a Value> {
    msg["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .filter(|p| p["content_type"] == content_type)
        .collect()
}

fn decode_base64(s: &str) -> Vec<u8> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::new();
    let mut acc = 0_u32;
    let mut bits = 0;
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[tokio::test]
async fn two_alerts_to_two_recipients_with_inline_charts() {
    let mut sink = start_sink(&[]).await;
    let (receiver, _) = email_receiver(sink.port, &["oncall@example.com", "sre@example.com"]);
    let notifier = notify::build(&receiver).expect("email notifier");
    assert_eq!(notifier.kind(), "email");
    let mut n = notification(
        "oncall-mail",
        vec![
            disk_alert("db1", "00000000000000d1"),
            disk_alert("db2", "00000000000000d2"),
        ],
    );
    n.group_labels
        .insert("host_name".to_string(), "db1".to_string());
    notifier
        .notify(&n)
        .await
        .expect("the SMTP server accepts the mail");
    let msg = received(sink.dir.path(), 1).await;
    sink.peer.assert_running();

    assert_eq!(msg["subject"], "[FIRING:2] DiskWillFill host_name=db1");
    assert_eq!(msg["mail_from"], "presage@example.com");
    let rcpt: Vec<&str> = msg["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(rcpt, ["oncall@example.com", "sre@example.com"]);
    let to: Vec<&str> = msg["to"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(to, ["oncall@example.com", "sre@example.com"]);

    // multipart/alternative: text/plain, and multipart/related holding the HTML and the charts.
    assert_eq!(msg["parts"][0]["content_type"], "multipart/alternative");
    let plain = parts_of(&msg, "text/plain");
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0]["parent"], "multipart/alternative");
    let related = parts_of(&msg, "multipart/related");
    assert_eq!(related.len(), 1);
    assert_eq!(related[0]["parent"], "multipart/alternative");
    let html = parts_of(&msg, "text/html");
    assert_eq!(html.len(), 1);
    assert_eq!(html[0]["parent"], "multipart/related");
    let html = html[0]["text"].as_str().unwrap();
    let plain = plain[0]["text"].as_str().unwrap();

    let images = parts_of(&msg, "image/png");
    assert_eq!(images.len(), 2, "one chart per alert");
    for image in images {
        assert_eq!(image["parent"], "multipart/related");
        assert_eq!(image["disposition"], "inline");
        let cid = image["content_id"].as_str().expect("a Content-ID");
        let cid = cid.trim_start_matches('<').trim_end_matches('>');
        assert!(
            html.contains(&format!("src=\"cid:{cid}\"")),
            "the HTML references the chart {cid}"
        );
        let bytes = decode_base64(image["base64"].as_str().unwrap());
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().expect("the chart decodes as PNG");
        let info = reader.info();
        assert_eq!(
            (info.width, info.height),
            (notify::email::CHART_WIDTH, notify::email::CHART_HEIGHT)
        );
    }

    for body in [plain, html] {
        for needle in [
            "/var on db1 will reach 90% in 3h10m",
            "/var on db2 will reach 90% in 3h10m",
            "3h10m (P10 2h40m, P90 4h5m)",
            "0.82 (expected 0.8, band 0.78 to 0.83)",
            "daily",
            "log pattern `No space left on device` on db1",
            "Add 12 GiB to /var on db1 or rotate its logs within 3h",
            "Add 12 GiB to /var on db2 or rotate its logs within 3h",
            "http://127.0.0.1:9470/#/series?host_name=db2",
        ] {
            assert!(body.contains(needle), "`{needle}` missing from\n{body}");
        }
    }
}

#[tokio::test]
async fn smtp_auth_and_a_subject_template() {
    let mut sink = start_sink(&["--auth", "presage:s3cret-pass"]).await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("smtp-password");
    std::fs::write(&password_file, "s3cret-pass\n").unwrap();
    let (mut receiver, mut email) = email_receiver(sink.port, &["oncall@example.com"]);
    email.username = Some("presage".to_string());
    email.password = Some(SecretRef {
        file: Some(password_file.clone()),
        env: None,
    });
    email.subject = Some("{{ status }} {{ alertname }} on {{ labels.host_name }}".to_string());
    receiver.email = Some(email.clone());
    let notifier = notify::build(&receiver).expect("email notifier");
    let n = notification("oncall-mail", vec![disk_alert("db1", "00000000000000d1")]);
    notifier.notify(&n).await.expect("authenticated delivery");
    let msg = received(sink.dir.path(), 1).await;
    assert_eq!(msg["authenticated"], true);
    assert_eq!(msg["subject"], "FIRING DiskWillFill on db1");

    // A wrong password is refused with a permanent (5xx) error: no retry would help.
    std::fs::write(&password_file, "wrong\n").unwrap();
    receiver.email = Some(email);
    let notifier = notify::build(&receiver).expect("email notifier");
    let err = notifier
        .notify(&n)
        .await
        .expect_err("a wrong password is refused");
    assert!(!err.retryable, "{err:?}");
    sink.peer.assert_running();
}

#[tokio::test]
async fn smtp_replies_decide_whether_to_retry() {
    let sink = start_sink(&[
        "--reject",
        "nobody@example.com",
        "--defer",
        "busy@example.com",
    ])
    .await;
    let n = notification("oncall-mail", vec![disk_alert("db1", "00000000000000d1")]);

    let (receiver, _) = email_receiver(sink.port, &["nobody@example.com"]);
    let err: NotifyError = notify::build(&receiver)
        .unwrap()
        .notify(&n)
        .await
        .expect_err("550 refuses the recipient");
    assert!(!err.retryable, "a 5xx reply is permanent: {err:?}");
    assert!(
        err.message.contains("550") || err.message.contains("no such user"),
        "{err:?}"
    );

    let (receiver, _) = email_receiver(sink.port, &["busy@example.com"]);
    let err = notify::build(&receiver)
        .unwrap()
        .notify(&n)
        .await
        .expect_err("451 defers the recipient");
    assert!(err.retryable, "a 4xx reply is transient: {err:?}");

    // Nothing listening: a connection error, retryable.
    drop(sink);
    let (receiver, _) = email_receiver(free_port(), &["oncall@example.com"]);
    let err = notify::build(&receiver)
        .unwrap()
        .notify(&n)
        .await
        .expect_err("connection refused");
    assert!(err.retryable, "{err:?}");
}

#[tokio::test]
async fn tls_is_never_downgraded_to_plain_text() {
    // The test server offers no STARTTLS: `starttls` (required) and `tls` both refuse to send.
    let sink = start_sink(&[]).await;
    let n = notification("oncall-mail", vec![disk_alert("db1", "00000000000000d1")]);
    for tls in [SmtpTls::Starttls, SmtpTls::Tls] {
        let (mut receiver, mut email) = email_receiver(sink.port, &["oncall@example.com"]);
        email.tls = tls;
        email.timeout = Duration::from_secs(5);
        receiver.email = Some(email);
        let err = notify::build(&receiver)
            .expect("email notifier")
            .notify(&n)
            .await
            .expect_err("no mail over an unencrypted connection");
        if tls == SmtpTls::Starttls {
            assert!(err.message.contains("STARTTLS"), "{err:?}");
            assert!(
                !err.retryable,
                "a server without STARTTLS will not grow it: {err:?}"
            );
        }
    }
    assert!(
        !sink.dir.path().join("msg-1.json").exists(),
        "nothing was delivered in plain text"
    );
}

/// A private CA and a certificate for 127.0.0.1 signed by it, as PEM files in `dir`:
/// (ca.pem, cert.pem, key.pem).
fn private_ca(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("write CA");
    std::fs::write(&paths.1, cert.pem()).expect("write certificate");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}

#[tokio::test]
async fn starttls_and_implicit_tls_deliver_to_a_server_with_a_private_ca() {
    for (mode, tls) in [("starttls", SmtpTls::Starttls), ("implicit", SmtpTls::Tls)] {
        let certs = tempfile::tempdir().expect("temp dir");
        let (ca, cert, key) = private_ca(certs.path());
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let sink = start_sink(&["--cert", &cert, "--key", &key, "--tls", mode]).await;
        let n = notification("oncall-mail", vec![disk_alert("db1", "00000000000000d1")]);

        // Without the CA the certificate is refused: nothing is sent unverified.
        let (mut receiver, mut email) = email_receiver(sink.port, &["oncall@example.com"]);
        email.tls = tls;
        email.timeout = Duration::from_secs(5);
        receiver.email = Some(email.clone());
        notify::build(&receiver)
            .expect("email notifier")
            .notify(&n)
            .await
            .expect_err("an unknown CA is refused");

        // With it, the mail goes through encrypted.
        email.ca_file = Some(ca);
        receiver.email = Some(email);
        notify::build(&receiver)
            .expect("email notifier")
            .notify(&n)
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e:?}"));
        let msg = received(sink.dir.path(), 1).await;
        assert_eq!(
            msg["rcpt_tos"],
            serde_json::json!(["oncall@example.com"]),
            "{mode}"
        );
        drop(sink.peer);
    }
}
