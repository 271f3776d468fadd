//! lvsadm's side of the control socket: requests of `crate::logic::api` through `crate::io::control`.

use std::{io, path::Path};

use crate::{
    io::control::{self, ControlError},
    logic::{
        api::{Change, Daemons, Request, Response, Snapshot},
        sync::{SyncDaemon, SyncRole},
    },
};

/// Why a request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the lvs daemon at {path}: {source} (is `lvs director` running?)")]
    NotRunning {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The daemon refused; nothing changed. `change` indexes the request's changes.
    #[error("{message}")]
    Rejected {
        message: String,
        change: Option<usize>,
    },
    #[error("talking to the lvs daemon failed: {0}")]
    Exchange(String),
    #[error("the lvs daemon answered {0} where lvsadm expected {1}")]
    Unexpected(&'static str, &'static str),
}

impl From<ControlError> for ClientError {
    fn from(error: ControlError) -> Self {
        match error {
            ControlError::NotRunning { path, source } => ClientError::NotRunning {
                path: path.display().to_string(),
                source,
            },
            other => ClientError::Exchange(other.to_string()),
        }
    }
}

/// Applies `changes` in order, all or none.
pub async fn apply(socket: &Path, changes: Vec<Change>) -> Result<(), ClientError> {
    match call(socket, &Request::Apply { changes }).await? {
        Response::Ok => Ok(()),
        other => Err(unexpected(&other, "ok")),
    }
}

/// The daemon's state; the connection table too when `connections`.
pub async fn snapshot(socket: &Path, connections: bool) -> Result<Snapshot, ClientError> {
    match call(socket, &Request::Snapshot { connections }).await? {
        Response::Snapshot(snapshot) => Ok(snapshot),
        other => Err(unexpected(&other, "a snapshot")),
    }
}

/// Has the daemon read its config file again; the answer says what changed.
pub async fn reload(socket: &Path) -> Result<String, ClientError> {
    match call(socket, &Request::Reload {}).await? {
        Response::Done { message } => Ok(message),
        other => Err(unexpected(&other, "a reload's result")),
    }
}

/// `--start-daemon`: the daemon starts a sync daemon with these parameters and the key of
/// its config's `[sync]` section, or says why not.
pub async fn start_sync_daemon(socket: &Path, daemon: SyncDaemon) -> Result<(), ClientError> {
    match call(socket, &Request::StartSyncDaemon { daemon }).await? {
        Response::Ok => Ok(()),
        other => Err(unexpected(&other, "ok")),
    }
}

/// `--stop-daemon`.
pub async fn stop_sync_daemon(socket: &Path, role: SyncRole) -> Result<(), ClientError> {
    match call(socket, &Request::StopSyncDaemon { role }).await? {
        Response::Ok => Ok(()),
        other => Err(unexpected(&other, "ok")),
    }
}

/// `-L --daemon`: the sync daemons running.
pub async fn daemons(socket: &Path) -> Result<Daemons, ClientError> {
    match call(socket, &Request::SyncDaemons {}).await? {
        Response::Daemons(daemons) => Ok(daemons),
        other => Err(unexpected(&other, "a list of sync daemons")),
    }
}

/// Sends a request; an error answer becomes `ClientError::Rejected`.
async fn call(socket: &Path, request: &Request) -> Result<Response, ClientError> {
    match control::call(socket, request).await? {
        Response::Error { message, change } => Err(ClientError::Rejected { message, change }),
        answer => Ok(answer),
    }
}

fn unexpected(answer: &Response, expected: &'static str) -> ClientError {
    let answered = match answer {
        Response::Ok => "ok",
        Response::Snapshot(_) => "a snapshot",
        Response::Done { .. } => "a reload's result",
        Response::Error { .. } => "an error",
        Response::Status(_) => "a status",
        Response::Connections(_) => "a connection list",
        Response::Daemons(_) => "a list of sync daemons",
        Response::Denied(_) => "a deny list",
    };
    ClientError::Unexpected(answered, expected)
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
        net::UnixListener,
    };

    use super::*;
    use crate::logic::api::{Protocol, ServiceKey};

    /// A daemon that answers one request with `answer` and hands back the request line.
    async fn one_shot(
        answer: &'static str,
    ) -> (std::path::PathBuf, tokio::task::JoinHandle<String>) {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "lvsadm-client-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let served = path.clone();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            BufReader::new(read).read_line(&mut line).await.unwrap();
            write
                .write_all(format!("{answer}\n").as_bytes())
                .await
                .unwrap();
            let _ = std::fs::remove_file(&served);
            line
        });
        (path, task)
    }

    #[tokio::test]
    async fn rejections_carry_the_message_and_the_failing_change() {
        let (path, daemon) =
            one_shot(r#"{"error":{"message":"Service already exists","change":0}}"#).await;
        let service = ServiceKey {
            protocol: Protocol::Udp,
            address: "10.0.0.2".parse().unwrap(),
            port: 53,
        };
        let error = apply(&path, vec![Change::DeleteService { service }])
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ClientError::Rejected { message, change: Some(0) } if message == "Service already exists"),
            "{error:?}"
        );
        let request = daemon.await.unwrap();
        assert_eq!(
            request,
            "{\"command\":\"apply\",\"changes\":[{\"op\":\"delete_service\",\"service\":{\"protocol\":\"udp\",\"address\":\"10.0.0.2\",\"port\":53}}]}\n"
        );
    }

    #[tokio::test]
    async fn a_daemon_that_does_not_know_the_api_yet_is_a_clear_rejection() {
        // What today's control server answers to a request it cannot decode.
        let (path, _daemon) =
            one_shot(r#"{"error":{"message":"invalid request: unknown variant `snapshot`"}}"#)
                .await;
        let error = snapshot(&path, false).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid request: unknown variant `snapshot`"
        );
    }

    #[tokio::test]
    async fn snapshots_are_decoded() {
        let (path, _daemon) = one_shot(
            r#"{"snapshot":{"connection_table_size":4096,"timeouts":{"tcp":900,"tcp_fin":120,"udp":300},"services":[]}}"#,
        )
        .await;
        let snapshot = snapshot(&path, true).await.unwrap();
        assert_eq!(snapshot.connection_table_size, 4096);
        assert!(snapshot.connections.is_empty());
    }

    #[tokio::test]
    async fn a_reload_returns_the_daemons_message() {
        let (path, daemon) = one_shot(r#"{"done":{"message":"reloaded /etc/lvs/lvs.toml"}}"#).await;
        assert_eq!(reload(&path).await.unwrap(), "reloaded /etc/lvs/lvs.toml");
        assert_eq!(daemon.await.unwrap(), "{\"command\":\"reload\"}\n");

        let (path, _daemon) = one_shot(r#"{"ok":null}"#).await;
        let error = reload(&path).await.unwrap_err();
        assert!(
            matches!(error, ClientError::Unexpected("ok", "a reload's result")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn the_sync_daemon_requests_are_sent_and_answered() {
        let (path, daemon) = one_shot(r#"{"ok":null}"#).await;
        let mut wanted = SyncDaemon::with_defaults(SyncRole::Backup, "eth1");
        wanted.sync_id = crate::base::values::SyncId::new(51).unwrap();
        start_sync_daemon(&path, wanted).await.unwrap();
        assert_eq!(
            daemon.await.unwrap(),
            "{\"command\":\"start_sync_daemon\",\"daemon\":{\"role\":\"backup\",\
             \"interface\":\"eth1\",\"sync_id\":51,\"group\":\"224.0.0.81\",\"port\":8848,\
             \"ttl\":1,\"max_len\":1472}}\n"
        );

        let (path, daemon) = one_shot(r#"{"ok":null}"#).await;
        stop_sync_daemon(&path, SyncRole::Master).await.unwrap();
        assert_eq!(
            daemon.await.unwrap(),
            "{\"command\":\"stop_sync_daemon\",\"role\":\"master\"}\n"
        );

        let (path, daemon) = one_shot(
            r#"{"daemons":{"sync_daemons":[{"role":"master","interface":"eth0","sync_id":1,"group":"224.0.0.81","port":8848,"ttl":1,"max_len":1472}]}}"#,
        )
        .await;
        let daemons = daemons(&path).await.unwrap();
        assert_eq!(daemon.await.unwrap(), "{\"command\":\"sync_daemons\"}\n");
        let mut expected = SyncDaemon::with_defaults(SyncRole::Master, "eth0");
        expected.sync_id = crate::base::values::SyncId::new(1).unwrap();
        assert_eq!(daemons.sync_daemons, vec![expected]);
        assert_eq!(daemons.bgp, None, "no [bgp] section");
    }

    #[tokio::test]
    async fn a_refused_sync_daemon_carries_the_daemons_message() {
        let (path, _daemon) =
            one_shot(r#"{"error":{"message":"no [sync] key_file in /etc/lvs/lvs.toml"}}"#).await;
        let error = start_sync_daemon(&path, SyncDaemon::with_defaults(SyncRole::Master, "eth0"))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "no [sync] key_file in /etc/lvs/lvs.toml");

        let (path, _daemon) = one_shot(r#"{"ok":null}"#).await;
        let error = daemons(&path).await.unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::Unexpected("ok", "a list of sync daemons")
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_daemon_is_its_own_clear_message() {
        let path = std::env::temp_dir().join(format!("lvsadm-none-{}.sock", std::process::id()));
        let error = snapshot(&path, false).await.unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot reach the lvs daemon at {}: ",
                path.display()
            )),
            "{text}"
        );
        assert!(text.ends_with("(is `lvs director` running?)"), "{text}");
    }
}
