//! Checker tests against servers on 127.0.0.1 that answer with chosen status codes, bodies
//! and delays, over TCP or TLS (a self-signed certificate made for the test).

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::{Arc, Mutex},
    time::Duration,
};

use md5::{Digest as _, Md5};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpListener,
};
use tokio_rustls::{
    LazyConfigAcceptor,
    rustls::{
        ServerConfig,
        pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
    },
};

use super::*;
use crate::logic::config::health::{BodyRegex, Endpoint, StatusCodes};

/// How the test server answers.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: &'static str,
    /// Wait this long before answering.
    delay: Duration,
    /// Answer `Connection: keep-alive` and keep the connection open afterwards.
    keep_open: bool,
}

impl Reply {
    fn ok(body: &'static str) -> Self {
        Self {
            status: 200,
            body,
            delay: Duration::ZERO,
            keep_open: false,
        }
    }
}

/// What the server saw: the request head of each connection, and the SNI name if TLS.
#[derive(Default)]
struct Seen {
    heads: Vec<String>,
    sni: Vec<Option<String>>,
}

struct TestServer {
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

/// A self-signed certificate for `health.test`, as PEM and as a server config.
struct TestCert {
    pem: String,
    config: Arc<ServerConfig>,
}

fn test_cert() -> TestCert {
    let certified = rcgen::generate_simple_self_signed(vec!["health.test".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    TestCert {
        pem: certified.cert.pem(),
        config: Arc::new(config),
    }
}

async fn serve(reply: Reply, tls: Option<Arc<ServerConfig>>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (reply, record, tls) = (reply.clone(), record.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => answer(stream, &reply, &record).await,
                    Some(config) => {
                        let acceptor = LazyConfigAcceptor::new(Default::default(), stream);
                        let Ok(start) = acceptor.await else { return };
                        let sni = start.client_hello().server_name().map(str::to_owned);
                        record.lock().unwrap().sni.push(sni);
                        if let Ok(stream) = start.into_stream(config).await {
                            answer(stream, &reply, &record).await;
                        }
                    }
                }
            });
        }
    });
    TestServer { port, seen }
}

/// Reads the request head and writes the canned answer.
async fn answer<S>(mut stream: S, reply: &Reply, seen: &Mutex<Seen>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    seen.lock()
        .unwrap()
        .heads
        .push(String::from_utf8_lossy(&head).into_owned());
    tokio::time::sleep(reply.delay).await;
    let connection = if reply.keep_open {
        "keep-alive"
    } else {
        "close"
    };
    let response = format!(
        "HTTP/1.1 {} Test\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    let _ = stream.write_all(response.as_bytes()).await;
    if reply.keep_open {
        // Far longer than any check's timeout: the check must not wait for the close.
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let _ = stream.shutdown().await;
}

fn url(path: &str) -> UrlCheck {
    UrlCheck {
        path: path.into(),
        status: StatusCodes::default(),
        digest: None,
        virtualhost: None,
        regex: None,
    }
}

fn http_probe(port: u16, urls: Vec<UrlCheck>, tls: Option<TlsOptions>) -> HttpProbe {
    HttpProbe {
        endpoint: Endpoint {
            connect: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(),
            bind: None,
        },
        tls,
        version: HttpVersion::Http10,
        urls,
    }
}

fn md5_of(body: &str) -> [u8; 16] {
    Md5::digest(body.as_bytes()).into()
}

async fn check(probe_config: &HttpProbe) -> Outcome {
    probe(probe_config, Duration::from_secs(2), &TlsConfigs::default()).await
}

#[tokio::test]
async fn status_codes_are_judged_by_the_accepted_ranges() {
    let cases: [(u16, Option<StatusCodes>, Outcome); 5] = [
        (200, None, Outcome::pass("status 200")),
        (204, None, Outcome::pass("status 204")),
        (503, None, Outcome::Fail(Failure::Status(503))),
        (301, None, Outcome::Fail(Failure::Status(301))),
        (
            301,
            Some(StatusCodes(vec![(200, 200), (300, 399)])),
            Outcome::pass("status 301"),
        ),
    ];
    for (status, accepted, expected) in cases {
        let server = serve(
            Reply {
                status,
                ..Reply::ok("hello")
            },
            None,
        )
        .await;
        let mut u = url("/health");
        if let Some(accepted) = accepted {
            u.status = accepted;
        }
        assert_eq!(
            check(&http_probe(server.port, vec![u], None)).await,
            expected,
            "status {status}"
        );
    }
}

#[tokio::test]
async fn the_body_digest_must_match() {
    let server = serve(Reply::ok("all good\n"), None).await;
    let mut good = url("/");
    good.digest = Some(md5_of("all good\n"));
    assert!(
        check(&http_probe(server.port, vec![good], None))
            .await
            .passed()
    );
    let mut bad = url("/");
    bad.digest = Some(md5_of("something else"));
    let outcome = check(&http_probe(server.port, vec![bad], None)).await;
    let Outcome::Fail(Failure::DigestMismatch { got, .. }) = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(got, &hex(&md5_of("all good\n")));
    assert!(outcome.to_string().starts_with("digest mismatch"));
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let server = serve(
        Reply {
            delay: Duration::from_secs(30),
            ..Reply::ok("late")
        },
        None,
    )
    .await;
    let outcome = probe(
        &http_probe(server.port, vec![url("/")], None),
        Duration::from_millis(300),
        &TlsConfigs::default(),
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Fail(Failure::Timeout(Duration::from_millis(300)))
    );
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    assert_eq!(
        check(&http_probe(port, vec![url("/")], None)).await,
        Outcome::Fail(Failure::Refused)
    );
}

#[tokio::test]
async fn a_server_that_hangs_up_is_a_bad_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(b"not http at all\r\n\r\n").await;
        }
    });
    let outcome = check(&http_probe(port, vec![url("/")], None)).await;
    assert!(
        matches!(outcome, Outcome::Fail(Failure::Http(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn the_request_carries_version_host_and_path() {
    let server = serve(Reply::ok("x"), None).await;
    let mut with_host = url("/status?full=1");
    with_host.virtualhost = Some("www.example.test".into());
    let mut probe_config = http_probe(server.port, vec![url("/a"), with_host], None);
    assert!(check(&probe_config).await.passed());
    probe_config.version = HttpVersion::Http11;
    assert!(check(&probe_config).await.passed());

    let heads = server.seen.lock().unwrap().heads.clone();
    assert_eq!(
        heads.len(),
        4,
        "one connection per url and check: {heads:?}"
    );
    assert!(heads[0].starts_with("GET /a HTTP/1.0\r\n"), "{}", heads[0]);
    let lower = heads[0].to_ascii_lowercase();
    assert!(
        lower.contains(&format!("host: 127.0.0.1:{}\r\n", server.port)),
        "{}",
        heads[0]
    );
    assert!(
        lower.contains("user-agent: lvs-healthcheck/"),
        "{}",
        heads[0]
    );
    assert!(
        heads[1].starts_with("GET /status?full=1 HTTP/1.0\r\n"),
        "{}",
        heads[1]
    );
    assert!(
        heads[1]
            .to_ascii_lowercase()
            .contains("host: www.example.test\r\n"),
        "{}",
        heads[1]
    );
    assert!(heads[2].starts_with("GET /a HTTP/1.1\r\n"), "{}", heads[2]);
}

fn with_regex(path: &str, pattern: &str, no_match: bool) -> UrlCheck {
    let mut u = url(path);
    u.regex = Some(BodyRegex::new(pattern, &[], no_match, 0, None).unwrap());
    u
}

#[tokio::test]
async fn the_body_must_match_the_regex() {
    let server = serve(Reply::ok("db: up\nstatus: ok\n"), None).await;
    let cases = [
        (with_regex("/", r"status: (ok|degraded)", false), Ok(())),
        (
            with_regex("/", r"status: down", false),
            Err("body does not match regex \"status: down\""),
        ),
        (with_regex("/", r"(?i)error", true), Ok(())),
        (
            with_regex("/", r"db: up", true),
            Err("body matches regex \"db: up\" (regex_no_match)"),
        ),
    ];
    for (u, expected) in cases {
        let outcome = check(&http_probe(server.port, vec![u], None)).await;
        match expected {
            Ok(()) => assert_eq!(outcome, Outcome::pass("status 200")),
            Err(reason) => assert_eq!(outcome.to_string(), reason),
        }
    }
    // With a digest too, both must hold.
    let mut both = with_regex("/", "status: ok", false);
    both.digest = Some(md5_of("db: up\nstatus: ok\n"));
    assert!(
        check(&http_probe(server.port, vec![both.clone()], None))
            .await
            .passed()
    );
    both.digest = Some(md5_of("other"));
    let outcome = check(&http_probe(server.port, vec![both], None)).await;
    assert!(
        matches!(outcome, Outcome::Fail(Failure::DigestMismatch { .. })),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn the_regex_sees_the_first_mib_of_a_large_body() {
    let body: &'static str = Box::leak(format!("{}needle", "a".repeat(MAX_BODY_MATCHED)).into());
    let server = serve(Reply::ok(body), None).await;
    let outcome = check(&http_probe(
        server.port,
        vec![with_regex("/", "^a+$", false)],
        None,
    ))
    .await;
    assert!(outcome.passed(), "{outcome:?}");
    let outcome = check(&http_probe(
        server.port,
        vec![with_regex("/", "needle", false)],
        None,
    ))
    .await;
    assert!(
        matches!(
            outcome,
            Outcome::Fail(Failure::Regex { matched: false, .. })
        ),
        "{outcome:?}"
    );
}

const VERSIONS: [HttpVersion; 4] = [
    HttpVersion::Http10,
    HttpVersion::Http10Close,
    HttpVersion::Http10KeepAlive,
    HttpVersion::Http11,
];

#[tokio::test]
async fn http_protocol_sets_the_version_and_the_connection_header() {
    let expected = [
        ("GET /v HTTP/1.0\r\n", None),
        ("GET /v HTTP/1.0\r\n", Some("close")),
        ("GET /v HTTP/1.0\r\n", Some("keep-alive")),
        ("GET /v HTTP/1.1\r\n", Some("close")),
    ];
    for (version, (request_line, connection)) in VERSIONS.into_iter().zip(expected) {
        let server = serve(Reply::ok("x"), None).await;
        let mut probe_config = http_probe(server.port, vec![url("/v")], None);
        probe_config.version = version;
        assert!(check(&probe_config).await.passed(), "{version:?}");
        let head = server.seen.lock().unwrap().heads[0].clone();
        assert!(head.starts_with(request_line), "{version:?}: {head}");
        let header = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("connection")
                .then(|| value.trim().to_owned())
        });
        assert_eq!(header.as_deref(), connection, "{version:?}: {head}");
    }
}

#[tokio::test]
async fn a_connection_kept_open_does_not_hold_the_check() {
    let server = serve(
        Reply {
            keep_open: true,
            ..Reply::ok("still here")
        },
        None,
    )
    .await;
    for version in VERSIONS {
        let mut probe_config = http_probe(server.port, vec![url("/")], None);
        probe_config.version = version;
        probe_config.urls[0].digest = Some(md5_of("still here"));
        assert_eq!(
            check(&probe_config).await,
            Outcome::pass("status 200"),
            "{version:?}: the whole body is read by its length, not by the close"
        );
    }
}

#[tokio::test]
async fn every_url_must_pass() {
    let server = serve(Reply::ok("body"), None).await;
    let mut wrong = url("/second");
    wrong.digest = Some(md5_of("other"));
    let outcome = check(&http_probe(server.port, vec![url("/first"), wrong], None)).await;
    assert!(
        matches!(outcome, Outcome::Fail(Failure::DigestMismatch { .. })),
        "{outcome:?}"
    );
}

fn tls(sni: Option<&str>, verify: bool, ca_file: Option<PathBuf>) -> Option<TlsOptions> {
    Some(TlsOptions {
        sni: sni.map(str::to_owned),
        verify,
        ca_file,
    })
}

#[tokio::test]
async fn ssl_get_does_not_verify_certificates_by_default() {
    let cert = test_cert();
    let server = serve(Reply::ok("secure"), Some(cert.config.clone())).await;
    let mut u = url("/");
    u.digest = Some(md5_of("secure"));
    let outcome = check(&http_probe(server.port, vec![u], tls(None, false, None))).await;
    assert_eq!(outcome, Outcome::pass("status 200"));
    assert_eq!(
        server.seen.lock().unwrap().sni,
        vec![None],
        "no SNI unless enabled"
    );
}

#[tokio::test]
async fn ssl_get_sends_the_sni_name_when_enabled() {
    let cert = test_cert();
    let server = serve(Reply::ok("secure"), Some(cert.config.clone())).await;
    let outcome = check(&http_probe(
        server.port,
        vec![url("/")],
        tls(Some("health.test"), false, None),
    ))
    .await;
    assert!(outcome.passed(), "{outcome:?}");
    assert_eq!(
        server.seen.lock().unwrap().sni,
        vec![Some("health.test".to_owned())]
    );
}

#[tokio::test]
async fn ssl_get_verifies_against_the_ca_file_when_asked() {
    let cert = test_cert();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &cert.pem).unwrap();
    let server = serve(Reply::ok("secure"), Some(cert.config.clone())).await;

    let trusted = http_probe(
        server.port,
        vec![url("/")],
        tls(Some("health.test"), true, Some(ca_file.clone())),
    );
    assert!(check(&trusted).await.passed());

    // The certificate is for health.test, not for another name.
    let wrong_name = http_probe(
        server.port,
        vec![url("/")],
        tls(Some("other.test"), true, Some(ca_file)),
    );
    let outcome = check(&wrong_name).await;
    assert!(
        matches!(&outcome, Outcome::Fail(Failure::Tls(reason)) if reason.contains("certificate")),
        "{outcome:?}"
    );

    // A self-signed certificate is not trusted by the system's roots.
    let untrusted = http_probe(
        server.port,
        vec![url("/")],
        tls(Some("health.test"), true, None),
    );
    let outcome = check(&untrusted).await;
    assert!(
        matches!(&outcome, Outcome::Fail(Failure::Tls(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn plain_http_to_a_tls_port_fails_and_a_missing_ca_file_is_reported() {
    let cert = test_cert();
    let server = serve(Reply::ok("secure"), Some(cert.config.clone())).await;
    let outcome = check(&http_probe(server.port, vec![url("/")], None)).await;
    assert!(!outcome.passed(), "{outcome:?}");

    let missing = http_probe(
        server.port,
        vec![url("/")],
        tls(None, true, Some("/nonexistent/ca.pem".into())),
    );
    let outcome = check(&missing).await;
    assert!(
        matches!(&outcome, Outcome::Fail(Failure::Tls(reason)) if reason.contains("/nonexistent/ca.pem")),
        "{outcome:?}"
    );
}

#[test]
fn an_ipv6_address_is_bracketed_in_the_host_header() {
    let mut probe = http_probe(80, vec![url("/")], None);
    probe.endpoint.connect = "[2001:db8::11]:80".parse().unwrap();
    let built = request(&probe, &url("/")).unwrap();
    assert_eq!(built.headers()[header::HOST], "[2001:db8::11]");
    probe.endpoint.connect = "[2001:db8::11]:8080".parse().unwrap();
    let request = request(&probe, &url("/")).unwrap();
    assert_eq!(request.headers()[header::HOST], "[2001:db8::11]:8080");
}
