//! `HTTP_GET` and `SSL_GET`: a GET of each configured URL on a fresh connection, judged by its
//! status code and, when asked, the MD5 digest of its body and a regex over it.
//!
//! HTTP is spoken by hyper's connection API rather than a pooled client, because a check must
//! be exactly one new connection to `connect_ip:connect_port` from `bindto`, with the Host
//! header and the TLS server name chosen independently of that address (`virtualhost`,
//! `sni_name`). TLS is rustls: by default certificates are not verified, as keepalived does;
//! with `verify_certificate` they are, against `ca_file` or the system's roots.

use std::{
    collections::HashMap,
    io,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use http_body_util::{BodyExt as _, Empty};
use hyper::{
    Request, Version,
    body::{Bytes, Incoming},
    header,
};
use hyper_util::rt::TokioIo;
use md5::{Digest as _, Md5};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{
    TlsConnector,
    rustls::{
        self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
        pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject as _},
    },
};

use crate::health::{Failure, Outcome, tcp};
use crate::logic::config::health::{
    HttpProbe, HttpVersion, MAX_BODY_MATCHED, TlsOptions, UrlCheck,
};

/// The User-Agent of health checks, so that real servers can tell them from clients.
const USER_AGENT: &str = concat!("lvs-healthcheck/", env!("CARGO_PKG_VERSION"));

/// What a TLS client configuration depends on: verification, and the CA file if any.
type TlsKey = (bool, Option<PathBuf>);

/// TLS client configurations, built once per verification setting and shared by all checks.
#[derive(Default)]
pub struct TlsConfigs {
    built: Mutex<HashMap<TlsKey, Arc<ClientConfig>>>,
}

impl TlsConfigs {
    fn get(&self, options: &TlsOptions) -> Result<Arc<ClientConfig>, Failure> {
        let key = (options.verify, options.ca_file.clone());
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(config) = built.get(&key) {
            return Ok(config.clone());
        }
        let config = Arc::new(client_config(options)?);
        built.insert(key, config.clone());
        Ok(config)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(options: &TlsOptions) -> Result<ClientConfig, Failure> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::Tls(e.to_string()))?;
    let config = if options.verify {
        builder
            .with_root_certificates(roots(options.ca_file.as_deref())?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    };
    Ok(config)
}

/// The trusted roots: the CA file's certificates, or the system's.
fn roots(ca_file: Option<&std::path::Path>) -> Result<RootCertStore, Failure> {
    let mut store = RootCertStore::empty();
    let certificates: Vec<CertificateDer<'static>> = match ca_file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| Failure::Tls(format!("reading CA file {}: {e}", path.display())))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _ignored) = store.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(Failure::Tls(match ca_file {
            Some(path) => format!("no CA certificate in {}", path.display()),
            None => "no CA certificate in the system's store".into(),
        }));
    }
    Ok(store)
}

/// Accepts any certificate, but still checks that the server holds its key (the handshake
/// signature), so that a check talks TLS for real.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Checks every URL in turn, each on its own connection and within `timeout`; the first
/// failure decides.
pub async fn probe(http: &HttpProbe, timeout: Duration, tls: &TlsConfigs) -> Outcome {
    let mut last = Outcome::pass("no url");
    for url in &http.urls {
        last = match tokio::time::timeout(timeout, get(http, url, tls)).await {
            Ok(Ok(status)) => Outcome::pass(format!("status {status}")),
            Ok(Err(failure)) => return Outcome::Fail(failure),
            Err(_) => return Outcome::Fail(Failure::Timeout(timeout)),
        };
    }
    last
}

/// One GET; returns the accepted status code.
async fn get(http: &HttpProbe, url: &UrlCheck, tls: &TlsConfigs) -> Result<u16, Failure> {
    let stream = tcp::connect(&http.endpoint).await?;
    // A check is a tiny request and response: send it at once.
    let _ = stream.set_nodelay(true);
    let request = request(http, url)?;
    match &http.tls {
        None => exchange(NoShutdown(stream), request, url).await,
        Some(options) => {
            let config = tls.get(options)?;
            let name = match &options.sni {
                Some(name) => ServerName::try_from(name.clone())
                    .map_err(|e| Failure::Tls(format!("SNI name {name:?}: {e}")))?,
                // An IP address as the server name sends no SNI.
                None => ServerName::IpAddress(http.endpoint.connect.ip().into()),
            };
            let stream = TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| Failure::Tls(e.to_string()))?;
            exchange(NoShutdown(stream), request, url).await
        }
    }
}

/// A check's stream, whose orderly shutdown does nothing. Hyper shuts a connection down
/// once it is done with it (a FIN, and for TLS a close_notify before it), but a check's
/// connection is closed with a reset right after (see `tcp::connect`): the FIN was one more
/// segment for the kernel to send and both ends to process, about a sixth of an HTTP_GET's
/// CPU on the loopback, for a connection that is reset a moment later anyway.
struct NoShutdown<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for NoShutdown<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoShutdown<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

pub(super) fn request(http: &HttpProbe, url: &UrlCheck) -> Result<Request<Empty<Bytes>>, Failure> {
    let default_port = if http.tls.is_some() { 443 } else { 80 };
    let host = match &url.virtualhost {
        Some(host) => host.clone(),
        // An IPv6 literal goes in brackets in a Host header (RFC 3986's IP-literal).
        None if http.endpoint.connect.port() == default_port => match http.endpoint.connect {
            std::net::SocketAddr::V4(at) => at.ip().to_string(),
            std::net::SocketAddr::V6(at) => format!("[{}]", at.ip()),
        },
        None => http.endpoint.connect.to_string(),
    };
    let mut request = Request::get(url.path.as_str())
        .version(match http.version {
            HttpVersion::Http10 | HttpVersion::Http10Close | HttpVersion::Http10KeepAlive => {
                Version::HTTP_10
            }
            HttpVersion::Http11 => Version::HTTP_11,
        })
        .header(header::HOST, host)
        .header(header::USER_AGENT, USER_AGENT);
    if let Some(connection) = http.version.connection() {
        request = request.header(header::CONNECTION, connection);
    }
    request
        .body(Empty::new())
        .map_err(|e| Failure::Http(format!("building the request: {e}")))
}

/// Sends the request on an established stream and judges the answer.
async fn exchange<S>(
    stream: S,
    request: Request<Empty<Bytes>>,
    url: &UrlCheck,
) -> Result<u16, Failure>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::Http(e.to_string()))?;
    let answer = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Failure::Http(e.to_string()))?;
        judge(response, url).await
    };
    // The connection future does the I/O; it is driven here, in the same task, so that
    // dropping the check (timeout) closes the socket at once.
    let mut connection = std::pin::pin!(connection);
    let mut answer = std::pin::pin!(answer);
    tokio::select! {
        biased;
        result = &mut answer => result,
        ended = &mut connection => match ended {
            Err(error) => Err(Failure::Http(error.to_string())),
            // The server closed after a complete answer; the answer is ready to be read.
            Ok(()) => answer.await,
        },
    }
}

async fn judge(response: hyper::Response<Incoming>, url: &UrlCheck) -> Result<u16, Failure> {
    let status = response.status().as_u16();
    if !url.status.accepts(status) {
        return Err(Failure::Status(status));
    }
    if url.digest.is_none() && url.regex.is_none() {
        return Ok(status);
    }
    let mut body = response.into_body();
    let mut md5 = Md5::new();
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Http(format!("reading the body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            md5.update(data);
            if url.regex.is_some() {
                let room = MAX_BODY_MATCHED.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }
    if let Some(expected) = url.digest {
        let got: [u8; 16] = md5.finalize().into();
        if got != expected {
            return Err(Failure::DigestMismatch {
                expected: hex(&expected),
                got: hex(&got),
            });
        }
    }
    if let Some(regex) = &url.regex {
        regex.judge(&kept)?;
    }
    Ok(status)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
