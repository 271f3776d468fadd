//! The local control API: newline-delimited JSON over a Unix socket that only root can use.
//!
//! Each request is one JSON object on a line; each answer is one JSON object on a line. A
//! line that is not a valid request gets an error answer and changes nothing. The server
//! does not own any state: it hands each request to the director loop and relays the answer.
//! The wire's types are `crate::api`'s, the same for the daemon and every client.

use std::{
    io,
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use futures::{SinkExt as _, StreamExt as _};
use tokio::{
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};
use tokio_util::codec::{Framed, LinesCodec};

pub use crate::api::{Request, Response};

/// The longest request line accepted; anything longer is an error, not a buffer to grow.
const MAX_LINE: usize = 64 * 1024;

/// A request with the channel its answer goes back on.
pub type Envelope = (Request, oneshot::Sender<Response>);

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another lvs daemon is already listening on {path}")]
    InUse { path: PathBuf },
    #[error("cannot set up the control socket {path}")]
    Setup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot connect to the lvs daemon at {path} (is the daemon running? start it with \
         `lvs director --config FILE`)"
    )]
    NotRunning {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("talking to the lvs daemon failed: {0}")]
    Exchange(String),
}

/// Binds the control socket: its directory is created 0700, the socket is made 0600, and a
/// socket file left behind by a daemon that died is replaced.
pub async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let setup = |source| ControlError::Setup {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(setup)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ControlError::InUse {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(setup)?;
    }
    let listener = UnixListener::bind(path).map_err(setup)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(setup)?;
    Ok(listener)
}

/// Accepts connections until the listener is dropped, relaying requests to `requests`.
pub async fn serve(listener: UnixListener, requests: mpsc::Sender<Envelope>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, requests.clone()));
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a control connection failed");
            }
        }
    }
}

async fn serve_connection(stream: UnixStream, requests: mpsc::Sender<Envelope>) {
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
    while let Some(line) = lines.next().await {
        // After an over-long or undecodable line the codec cannot find the next line
        // boundary reliably, so the connection ends after the error answer.
        let (response, framing_lost) = match line {
            Ok(line) => (answer(&line, &requests).await, false),
            Err(error) => (
                Response::Error {
                    message: format!("bad request line: {error}"),
                    change: None,
                },
                true,
            ),
        };
        let encoded = match serde_json::to_string(&response) {
            Ok(encoded) => encoded,
            Err(error) => {
                tracing::error!(%error, "encoding a control response failed");
                return;
            }
        };
        if lines.send(encoded).await.is_err() || framing_lost {
            return;
        }
    }
}

async fn answer(line: &str, requests: &mpsc::Sender<Envelope>) -> Response {
    let request: Request = match serde_json::from_str(line) {
        Ok(request) => request,
        Err(error) => {
            return Response::Error {
                message: format!("invalid request: {error}"),
                change: None,
            };
        }
    };
    let (reply, answer) = oneshot::channel();
    if requests.send((request, reply)).await.is_err() {
        return Response::Error {
            message: "the daemon is shutting down".into(),
            change: None,
        };
    }
    answer.await.unwrap_or_else(|_| Response::Error {
        message: "the daemon dropped the request".into(),
        change: None,
    })
}

/// Sends one request to the daemon and returns its answer.
pub async fn call(path: &Path, request: &Request) -> Result<Response, ControlError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| ControlError::NotRunning {
            path: path.to_owned(),
            source,
        })?;
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(usize::MAX));
    let encoded =
        serde_json::to_string(request).map_err(|e| ControlError::Exchange(e.to_string()))?;
    lines
        .send(encoded)
        .await
        .map_err(|e| ControlError::Exchange(e.to_string()))?;
    let line = lines
        .next()
        .await
        .ok_or_else(|| ControlError::Exchange("the daemon closed the connection".into()))?
        .map_err(|e| ControlError::Exchange(e.to_string()))?;
    serde_json::from_str(&line).map_err(|e| ControlError::Exchange(format!("bad answer: {e}")))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

    use super::*;
    use crate::status::Status;

    fn status() -> Status {
        Status {
            interface: "eth0".into(),
            xdp_mode: "native".into(),
            timeouts: crate::config::Timeouts::default(),
            counters: vec![],
            services: vec![],
        }
    }

    /// Starts a server on a temporary socket whose "director" answers every request with a
    /// fixed status, and returns the socket path.
    async fn server() -> (tempdir::TempDir, PathBuf) {
        let dir = tempdir::TempDir::new();
        let path = dir.path().join("run/lvs.sock");
        let listener = bind(&path).await.unwrap();
        let (tx, mut rx) = mpsc::channel::<Envelope>(4);
        tokio::spawn(serve(listener, tx));
        tokio::spawn(async move {
            while let Some((Request::Status {}, reply)) = rx.recv().await {
                let _ = reply.send(Response::Status(status()));
            }
        });
        (dir, path)
    }

    async fn raw_exchange(path: &Path, line: &str) -> String {
        let mut stream = UnixStream::connect(path).await.unwrap();
        stream.write_all(line.as_bytes()).await.unwrap();
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn status_round_trip_and_socket_is_private() {
        let (_dir, path) = server().await;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(
            call(&path, &Request::Status {}).await.unwrap(),
            Response::Status(status())
        );
    }

    /// The lines lvsadm, `lvs status` and `lvs reload` send decode to the requests the daemon
    /// serves, and the daemon's answers encode to the lines those clients decode: one type
    /// each way, with the JSON shapes fixed here.
    #[test]
    fn lvsadm_requests_and_the_daemons_answers_agree_on_the_wire() {
        let requests = [
            (
                r#"{"command":"apply","changes":[]}"#,
                Request::Apply { changes: vec![] },
            ),
            (
                r#"{"command":"snapshot","connections":true}"#,
                Request::Snapshot { connections: true },
            ),
            (r#"{"command":"reload"}"#, Request::Reload {}),
            (r#"{"command":"status"}"#, Request::Status {}),
            (r#"{"command":"connections"}"#, Request::Connections {}),
        ];
        for (line, decoded) in requests {
            assert_eq!(serde_json::from_str::<Request>(line).unwrap(), decoded);
            assert_eq!(serde_json::to_string(&decoded).unwrap(), line);
        }
        let answers = [
            (Response::Ok, r#""ok""#),
            (
                Response::Done {
                    message: "reloaded".into(),
                },
                r#"{"done":{"message":"reloaded"}}"#,
            ),
            (
                Response::Error {
                    message: "No such service".into(),
                    change: Some(1),
                },
                r#"{"error":{"message":"No such service","change":1}}"#,
            ),
            (
                Response::Error {
                    message: "the daemon is shutting down".into(),
                    change: None,
                },
                r#"{"error":{"message":"the daemon is shutting down"}}"#,
            ),
        ];
        for (sent, line) in answers {
            assert_eq!(serde_json::to_string(&sent).unwrap(), line);
            assert_eq!(serde_json::from_str::<Response>(line).unwrap(), sent);
        }
    }

    #[tokio::test]
    async fn malformed_requests_get_clear_errors() {
        let (_dir, path) = server().await;
        let cases = [
            ("not json\n", "invalid request: expected ident"),
            (
                "{\"command\":\"explode\"}\n",
                "invalid request: unknown variant `explode`",
            ),
            (
                "{\"command\":\"status\",\"extra\":1}\n",
                "invalid request: unknown field `extra`",
            ),
            ("{}\n", "invalid request: missing field `command`"),
        ];
        for (line, expected) in cases {
            let answer = raw_exchange(&path, line).await;
            let response: Response = serde_json::from_str(&answer).unwrap();
            match response {
                Response::Error { message, .. } => {
                    assert!(message.starts_with(expected), "{line:?}: {message}")
                }
                other => panic!("{line:?} got {other:?}"),
            }
        }
        let long = format!("{}\n", "x".repeat(MAX_LINE + 10));
        let answer = raw_exchange(&path, &long).await;
        assert!(answer.contains("bad request line"), "{answer}");
        // The server still answers good requests afterwards.
        assert_eq!(
            call(&path, &Request::Status {}).await.unwrap(),
            Response::Status(status())
        );
    }

    #[tokio::test]
    async fn a_second_daemon_cannot_take_a_live_socket_but_replaces_a_dead_one() {
        let (_dir, path) = server().await;
        assert!(matches!(bind(&path).await, Err(ControlError::InUse { .. })));

        let dir = tempdir::TempDir::new();
        let stale = dir.path().join("lvs.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        bind(&stale).await.expect("a stale socket file is replaced");
    }

    #[tokio::test]
    async fn calling_a_missing_daemon_says_so() {
        let dir = tempdir::TempDir::new();
        let error = call(&dir.path().join("none.sock"), &Request::Status {})
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("is the daemon running?"),
            "{error}"
        );
    }

    /// A minimal temporary directory, removed on drop.
    mod tempdir {
        pub struct TempDir(std::path::PathBuf);
        impl TempDir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static NEXT: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "lvs-control-test-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Self(path)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for TempDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
