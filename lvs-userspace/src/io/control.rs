//! The local control API: newline-delimited JSON over a Unix socket that only root can use.
//!
//! Each request is one JSON object on a line; each answer is one JSON object on a line. A
//! line that is not a valid request gets an error answer and changes nothing. The server
//! does not own any state: it hands each request to the director loop and relays the answer.
//! The wire's types are `crate::logic::api`'s, the same for the daemon and every client.
//!
//! The server is bounded ([`Limits`]): at most [`MAX_CONNECTIONS`] connections at once, each
//! closed when it stays silent (or does not read its answer) for [`IDLE_TIMEOUT`], and a
//! growing pause after each failed `accept`. Its shutdown is a cancellation token: the
//! accept loop stops, every connection task ends, and `serve` returns only after all have.

use std::{
    future::Future,
    io,
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::{SinkExt as _, StreamExt as _};
use tokio::{
    net::{UnixListener, UnixStream},
    sync::{Semaphore, mpsc, oneshot},
};
use tokio_util::{
    codec::{Framed, LinesCodec},
    sync::CancellationToken,
    task::TaskTracker,
};

pub use crate::logic::api::{Request, Response};

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

/// How many control connections are served at once. Each connection's requests are answered
/// one after another by the one daemon task, so more connections add no throughput; the bound
/// keeps a misbehaving client from holding unbounded tasks and descriptors.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection may stay open without sending a whole request line, or take to
/// read an answer. `lvsadm` sends its request at once and reads the answer at once, and a
/// monitor that keeps its connection asks far more often; a connection that does neither is
/// stuck or hostile, and would otherwise hold one of the [`MAX_CONNECTIONS`] places for ever.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The first pause after a failed `accept`, doubled after each further failure.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause between `accept` attempts: long enough not to spin on EMFILE, short
/// enough that the socket answers soon after descriptors are free again.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How the control server is bounded.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once. A connection beyond the bound is answered with one error
    /// line ("too many control connections") and closed at once, rather than left waiting
    /// with no answer: `lvsadm` then fails with a message the operator can act on.
    pub max_connections: usize,
    /// The pauses after failed `accept` calls (see [`Backoff`]).
    pub backoff: Backoff,
    /// How long a connection may be silent (no whole request line) or take to read an
    /// answer before it is closed (see [`IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            backoff: Backoff::new(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX),
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Exponential backoff between failed `accept` calls. An accept that fails (EMFILE, ENFILE,
/// ENOBUFS...) usually fails again at once, so retrying at once would spin a core; the pause
/// doubles up to a ceiling and starts over after an accept succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The pause before the next attempt, after one more failure.
    pub fn failed(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }

    /// An accept succeeded: the next failure pauses the shortest time again.
    pub fn succeeded(&mut self) {
        self.next = self.min;
    }
}

/// Where the control server takes its connections from: a `UnixListener`, or a stand-in in
/// tests that fails on demand.
pub trait Accept {
    fn accept(&mut self) -> impl Future<Output = io::Result<UnixStream>> + Send;
}

impl Accept for UnixListener {
    async fn accept(&mut self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(stream, _)| stream)
    }
}

/// Accepts connections and relays their requests to `requests` until `shutdown` is
/// cancelled, then ends every connection and returns once all their tasks have ended.
pub async fn serve(
    listener: impl Accept,
    requests: mpsc::Sender<Envelope>,
    shutdown: CancellationToken,
) {
    serve_with(listener, requests, shutdown, Limits::default()).await;
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    mut listener: impl Accept,
    requests: mpsc::Sender<Envelope>,
    shutdown: CancellationToken,
    limits: Limits,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = limits.backoff;
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(stream) => {
                backoff.succeeded();
                let shutdown = shutdown.clone();
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let requests = requests.clone();
                        connections.spawn(async move {
                            tokio::select! {
                                () = shutdown.cancelled() => {}
                                () = serve_connection(stream, requests, limits.idle_timeout) => {}
                            }
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(
                            limit = limits.max_connections,
                            "control connection refused: too many at once"
                        );
                        connections.spawn(async move {
                            tokio::select! {
                                () = shutdown.cancelled() => {}
                                () = refuse_connection(stream, limits.max_connections) => {}
                            }
                        });
                    }
                }
            }
            Err(error) => {
                let pause = backoff.failed();
                tracing::warn!(
                    %error,
                    pause_ms = pause.as_millis() as u64,
                    "accepting a control connection failed; trying again after a pause"
                );
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    // Connection tasks watch the same token, so each ends at its next await point; waiting
    // for them means no task outlives the server, and so none outlives the daemon's state.
    connections.close();
    connections.wait().await;
}

/// Answers a connection over the bound with one error line, then closes it.
async fn refuse_connection(stream: UnixStream, limit: usize) {
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
    let response = Response::Error {
        message: format!("too many control connections (at most {limit} at once); try again"),
        change: None,
    };
    if let Ok(encoded) = serde_json::to_string(&response) {
        let _ = lines.send(encoded).await;
    }
}

async fn serve_connection(stream: UnixStream, requests: mpsc::Sender<Envelope>, idle: Duration) {
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
    loop {
        let line = match tokio::time::timeout(idle, lines.next()).await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(_) => {
                tracing::debug!(
                    idle_s = idle.as_secs(),
                    "control connection closed: no request line in time"
                );
                return;
            }
        };
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
        // A client that does not read its answer is given as long as a silent one.
        let sent = tokio::time::timeout(idle, lines.send(encoded)).await;
        if !matches!(sent, Ok(Ok(()))) || framing_lost {
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
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

    use super::*;
    use crate::logic::status::Status;

    fn status() -> Status {
        Status {
            interface: "eth0".into(),
            xdp_mode: "native".into(),
            timeouts: crate::logic::config::Timeouts::default(),
            counters: vec![],
            flow_table: Default::default(),
            services: vec![],
            sync: Box::default(),
            bgp: None,
            deny: Vec::new(),
            service_lookup: Vec::new(),
        }
    }

    /// Starts a server on a temporary socket whose "director" answers every request with a
    /// fixed status, and returns the socket path.
    async fn server() -> (tempdir::TempDir, PathBuf) {
        let dir = tempdir::TempDir::new();
        let path = dir.path().join("run/lvs.sock");
        let listener = bind(&path).await.unwrap();
        let (tx, mut rx) = mpsc::channel::<Envelope>(4);
        tokio::spawn(serve(listener, tx, CancellationToken::new()));
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

    /// A listener whose first `failures` accepts fail as EMFILE does; it records when each
    /// accept was called.
    struct Flaky {
        failures: usize,
        calls: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
        inner: UnixListener,
    }

    impl Accept for Flaky {
        async fn accept(&mut self) -> io::Result<UnixStream> {
            self.calls.lock().unwrap().push(tokio::time::Instant::now());
            if self.failures > 0 {
                self.failures -= 1;
                return Err(io::Error::from_raw_os_error(libc::EMFILE));
            }
            UnixListener::accept(&self.inner)
                .await
                .map(|(stream, _)| stream)
        }
    }

    #[test]
    fn backoff_doubles_to_a_ceiling_and_starts_over_after_a_success() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(10), ms(50));
        let pauses: Vec<Duration> = (0..5).map(|_| backoff.failed()).collect();
        assert_eq!(pauses, [ms(10), ms(20), ms(40), ms(50), ms(50)]);
        backoff.succeeded();
        assert_eq!(backoff.failed(), ms(10));
    }

    #[tokio::test(start_paused = true)]
    async fn failing_accepts_are_retried_after_growing_pauses_and_then_served() {
        let dir = tempdir::TempDir::new();
        let path = dir.path().join("lvs.sock");
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let listener = Flaky {
            failures: 4,
            calls: calls.clone(),
            inner: bind(&path).await.unwrap(),
        };
        let (tx, mut rx) = mpsc::channel::<Envelope>(4);
        let shutdown = CancellationToken::new();
        let limits = Limits {
            max_connections: 4,
            backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(30)),
            ..Limits::default()
        };
        let server = tokio::spawn(serve_with(listener, tx, shutdown.clone(), limits));
        tokio::spawn(async move {
            while let Some((_, reply)) = rx.recv().await {
                let _ = reply.send(Response::Status(status()));
            }
        });
        // The fifth accept succeeds, so this request is answered after the four pauses.
        assert_eq!(
            call(&path, &Request::Status {}).await.unwrap(),
            Response::Status(status())
        );
        let calls = calls.lock().unwrap().clone();
        let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).take(4).collect();
        let ms = Duration::from_millis;
        assert_eq!(gaps, [ms(10), ms(20), ms(30), ms(30)]);
        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn connections_over_the_bound_get_a_clear_error_and_later_ones_are_served() {
        let dir = tempdir::TempDir::new();
        let path = dir.path().join("lvs.sock");
        let listener = bind(&path).await.unwrap();
        let (tx, mut rx) = mpsc::channel::<Envelope>(4);
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_with(listener, tx, shutdown.clone(), limits));
        tokio::spawn(async move {
            while let Some((_, reply)) = rx.recv().await {
                let _ = reply.send(Response::Status(status()));
            }
        });
        let request = "{\"command\":\"status\"}\n";
        // Two connections that stay open, each answered once, so both hold their place.
        let mut held = Vec::new();
        for _ in 0..2 {
            let stream = UnixStream::connect(&path).await.unwrap();
            let mut stream = BufReader::new(stream);
            stream
                .get_mut()
                .write_all(request.as_bytes())
                .await
                .unwrap();
            let mut answer = String::new();
            stream.read_line(&mut answer).await.unwrap();
            assert!(answer.contains("\"status\""), "{answer}");
            held.push(stream);
        }
        let answer = raw_exchange(&path, request).await;
        let response: Response = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            response,
            Response::Error {
                message: "too many control connections (at most 2 at once); try again".into(),
                change: None,
            }
        );
        // Once a held connection closes, its place is free again.
        drop(held.pop());
        let served = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(Response::Status(_)) = call(&path, &Request::Status {}).await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(served.is_ok(), "a freed place was never reused");
        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_idle_timeout_and_frees_its_place() {
        let dir = tempdir::TempDir::new();
        let path = dir.path().join("lvs.sock");
        let listener = bind(&path).await.unwrap();
        let (tx, mut rx) = mpsc::channel::<Envelope>(4);
        let idle = Duration::from_millis(300);
        let limits = Limits {
            max_connections: 1,
            idle_timeout: idle,
            ..Limits::default()
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_with(listener, tx, shutdown.clone(), limits));
        tokio::spawn(async move {
            while let Some((_, reply)) = rx.recv().await {
                let _ = reply.send(Response::Status(status()));
            }
        });
        // A client that asks at intervals shorter than the timeout keeps its connection.
        let mut talker = BufReader::new(UnixStream::connect(&path).await.unwrap());
        for _ in 0..4 {
            tokio::time::sleep(idle / 2).await;
            talker
                .get_mut()
                .write_all(b"{\"command\":\"status\"}\n")
                .await
                .unwrap();
            let mut answer = String::new();
            talker.read_line(&mut answer).await.unwrap();
            assert!(answer.contains("\"status\""), "{answer}");
        }
        drop(talker);
        // A client that sends half a line and then nothing holds the only place until the
        // timeout closes it; then the place serves again.
        let mut silent = UnixStream::connect(&path).await.unwrap();
        silent.write_all(b"{\"command\":").await.unwrap();
        let started = tokio::time::Instant::now();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest))
            .await
            .expect("the silent connection is closed");
        assert!(closed.is_ok() && rest.is_empty(), "{closed:?} {rest:?}");
        assert!(started.elapsed() >= idle, "closed before the timeout");
        let served = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(Response::Status(_)) = call(&path, &Request::Status {}).await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(served.is_ok(), "the freed place was never reused");
        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_ends_every_connection_and_then_serve_returns() {
        let dir = tempdir::TempDir::new();
        let path = dir.path().join("lvs.sock");
        let listener = bind(&path).await.unwrap();
        // A daemon that takes requests and never answers, so one connection waits on it.
        let (tx, mut rx) = mpsc::channel::<Envelope>(4);
        let unanswered = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Some(envelope) = rx.recv().await {
                kept.push(envelope);
            }
            kept.len()
        });
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, tx, shutdown.clone()));
        let mut idle = UnixStream::connect(&path).await.unwrap();
        let mut waiting = UnixStream::connect(&path).await.unwrap();
        waiting
            .write_all(b"{\"command\":\"status\"}\n")
            .await
            .unwrap();
        // Let the request reach the daemon before shutting down.
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returned")
            .unwrap();
        // Both connections were closed by the server: each reads end of file.
        for stream in [&mut idle, &mut waiting] {
            let mut rest = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
                .await
                .expect("the connection was closed");
            assert_eq!(read.unwrap(), 0);
        }
        // Every sender is gone with the tasks, so the stand-in daemon's queue ends too.
        assert_eq!(unanswered.await.unwrap(), 1);
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
