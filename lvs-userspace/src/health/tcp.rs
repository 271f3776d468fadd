//! `TCP_CHECK`: the real server accepts a connection within `connect_timeout`. The connection
//! helper is shared with the HTTP checker.

use std::{io, net::SocketAddr, time::Duration};

use tokio::net::{TcpSocket, TcpStream};

use crate::health::{Failure, Outcome};
use crate::logic::config::health::Endpoint;

/// Connects once and closes.
pub async fn probe(endpoint: &Endpoint, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, connect(endpoint)).await {
        Ok(Ok(_stream)) => Outcome::pass("connected"),
        Ok(Err(failure)) => Outcome::Fail(failure),
        Err(_) => Outcome::Fail(Failure::Timeout(timeout)),
    }
}

/// Opens a TCP connection to the endpoint, from its `bindto` address if it has one.
///
/// The connection is closed with a reset rather than a FIN (`SO_LINGER` 0, as HAProxy closes
/// its check connections): a check has nothing left to say when it closes, and an orderly
/// close would leave a socket in TIME_WAIT on the director for a minute after every check
/// (600,000 of them at 10,000 checks a second, beyond the kernel's default limit of
/// 262,144) and cost the FIN exchange on both sides.
pub async fn connect(endpoint: &Endpoint) -> Result<TcpStream, Failure> {
    let socket = TcpSocket::new_v4().map_err(|e| Failure::Connect(e.to_string()))?;
    socket
        .set_zero_linger()
        .map_err(|e| Failure::Connect(format!("setting SO_LINGER: {e}")))?;
    if let Some(bind) = endpoint.bind {
        socket
            .bind(SocketAddr::from((bind, 0)))
            .map_err(|e| Failure::Connect(format!("binding to {bind}: {e}")))?;
    }
    let stream = socket
        .connect(endpoint.connect)
        .await
        .map_err(|error| match error.kind() {
            io::ErrorKind::ConnectionRefused => Failure::Refused,
            _ => Failure::Connect(error.to_string()),
        })?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use std::net::{IpAddr, SocketAddr};

    use tokio::net::TcpListener;

    use super::*;

    fn endpoint(port: u16, bind: Option<IpAddr>) -> Endpoint {
        Endpoint {
            connect: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            bind,
        }
    }

    #[tokio::test]
    async fn a_listening_port_passes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(
            probe(&endpoint(port, None), Duration::from_secs(2)).await,
            Outcome::pass("connected")
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert_eq!(
            probe(&endpoint(port, None), Duration::from_secs(2)).await,
            Outcome::Fail(Failure::Refused)
        );
    }

    #[tokio::test]
    async fn bindto_sets_the_source_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let source = Ipv4Addr::new(127, 0, 0, 2);
        let target = endpoint(port, Some(source.into()));
        let (outcome, accepted) =
            tokio::join!(probe(&target, Duration::from_secs(2)), listener.accept());
        assert!(outcome.passed(), "{outcome:?}");
        assert_eq!(accepted.unwrap().1.ip(), source);
    }

    #[tokio::test]
    async fn an_address_that_is_not_local_cannot_be_bound() {
        let outcome = probe(
            &endpoint(1, Some(Ipv4Addr::new(192, 0, 2, 1).into())),
            Duration::from_secs(2),
        )
        .await;
        let Outcome::Fail(Failure::Connect(reason)) = &outcome else {
            panic!("{outcome:?}");
        };
        assert!(reason.contains("binding to 192.0.2.1"), "{reason}");
    }
}
