//! `UDP_CHECK`: a datagram is sent to the real server. Without `require_reply` the check
//! passes unless an ICMP error (port, host or network unreachable) comes back within
//! `connect_timeout`, as keepalived judges; with it, a reply must come and fit the rule. The
//! connected-socket helper is shared with the DNS checker.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    io,
    net::SocketAddr,
    os::fd::AsRawFd,
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::health::{Failure, Outcome};
use crate::logic::config::health::{Endpoint, UdpProbe};

/// The largest datagram read back: a reply longer than any `max_reply_length` still reads
/// whole, so that its length is judged rather than cut.
const RECEIVE_BUFFER: usize = 65_536;
/// The length of the random payload sent when none is configured.
const RANDOM_PAYLOAD: usize = 16;

/// Sends once and judges what comes back within `timeout`.
pub async fn probe(udp: &UdpProbe, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, exchange(udp)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(failure)) => Outcome::Fail(failure),
        Err(_) if udp.reply.is_none() => Outcome::pass("no ICMP error"),
        Err(_) => Outcome::Fail(Failure::Timeout(timeout)),
    }
}

async fn exchange(udp: &UdpProbe) -> Result<Outcome, Failure> {
    let socket = connect(&udp.endpoint)?;
    let payload = match &udp.payload {
        Some(payload) => payload.clone(),
        None => random_bytes(RANDOM_PAYLOAD),
    };
    socket.send(&payload).await.map_err(io_failure)?;
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    let length = socket.recv(&mut buffer).await.map_err(io_failure)?;
    let reply = &buffer[..length];
    match &udp.reply {
        None => Ok(Outcome::pass(format!("reply of {length} bytes"))),
        Some(rule) => Ok(match rule.judge(reply) {
            Ok(()) => Outcome::pass(format!("reply of {length} bytes")),
            Err(why) => Outcome::Fail(Failure::Reply(why)),
        }),
    }
}

/// A UDP socket connected to the endpoint, from its `bindto` address if it has one, that
/// hears ICMP errors about what it sends (`IP_RECVERR`, as keepalived sets): a connected
/// socket otherwise hears only "port unreachable", not "host unreachable".
pub fn connect(endpoint: &Endpoint) -> Result<UdpSocket, Failure> {
    let fail = |what: &str, e: io::Error| Failure::Connect(format!("{what}: {e}"));
    let socket = Socket::new(
        Domain::IPV4,
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )
    .map_err(|e| fail("creating a UDP socket", e))?;
    set_recverr(&socket).map_err(|e| fail("setting IP_RECVERR", e))?;
    if let Some(bind) = endpoint.bind {
        socket
            .bind(&SocketAddr::from((bind, 0)).into())
            .map_err(|e| fail(&format!("binding to {bind}"), e))?;
    }
    socket
        .connect(&endpoint.connect.into())
        .map_err(io_failure)?;
    UdpSocket::from_std(std::net::UdpSocket::from(socket))
        .map_err(|e| fail("registering the socket", e))
}

fn set_recverr(socket: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket, and an option value of the size given, which lives for the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_IP,
            libc::IP_RECVERR,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A send or receive error: "connection refused" is the ICMP port unreachable.
pub fn io_failure(error: io::Error) -> Failure {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => Failure::Refused,
        _ => Failure::Connect(error.to_string()),
    }
}

/// Bytes that differ from one attempt to the next (a random payload, a DNS query id), from
/// the standard library's randomly keyed hasher: nothing here needs more than that.
pub fn random_bytes(length: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(length + 8);
    while bytes.len() < length {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(bytes.len());
        bytes.extend_from_slice(&hasher.finish().to_ne_bytes());
    }
    bytes.truncate(length);
    bytes
}

/// Where a test's probe goes: loopback, on `port`.
#[cfg(test)]
pub(crate) fn loopback(port: u16) -> Endpoint {
    Endpoint {
        connect: SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port),
        bind: None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::logic::config::health::{HexPattern, ReplyRule};

    /// A UDP server on loopback that answers every datagram with `answer(datagram)`, or not
    /// at all when it gives `None`.
    async fn server(answer: fn(&[u8]) -> Option<Vec<u8>>) -> u16 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 65_536];
            while let Ok((length, from)) = socket.recv_from(&mut buffer).await {
                if let Some(reply) = answer(&buffer[..length]) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        port
    }

    /// A port nothing listens on: the kernel answers with port unreachable.
    async fn closed_port() -> u16 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.local_addr().unwrap().port()
    }

    fn check(port: u16, payload: Option<&[u8]>, reply: Option<ReplyRule>) -> UdpProbe {
        UdpProbe {
            endpoint: loopback(port),
            payload: payload.map(<[u8]>::to_vec),
            reply,
        }
    }

    fn required(pattern: Option<&str>, min_length: u16, max_length: u16) -> Option<ReplyRule> {
        Some(ReplyRule {
            pattern: pattern.map(|p| HexPattern::parse(p, true).unwrap()),
            min_length,
            max_length,
        })
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn an_echo_passes_with_or_without_require_reply() {
        let port = server(|d| Some(d.to_vec())).await;
        let outcome = probe(&check(port, Some(b"ping"), None), SHORT).await;
        assert_eq!(outcome, Outcome::pass("reply of 4 bytes"));
        let rule = required(Some("70 69 6e 67"), 4, 4);
        let outcome = probe(&check(port, Some(b"ping"), rule), SHORT).await;
        assert_eq!(outcome, Outcome::pass("reply of 4 bytes"));
    }

    #[tokio::test]
    async fn a_random_payload_is_sent_when_none_is_set() {
        let port = server(|d| Some(d.to_vec())).await;
        let outcome = probe(&check(port, None, required(None, 0, 255)), SHORT).await;
        assert_eq!(
            outcome,
            Outcome::pass(format!("reply of {RANDOM_PAYLOAD} bytes"))
        );
        assert_ne!(random_bytes(16), random_bytes(16));
    }

    #[tokio::test]
    async fn a_closed_port_fails_even_without_require_reply() {
        let port = closed_port().await;
        let outcome = probe(&check(port, Some(b"x"), None), SHORT).await;
        assert_eq!(outcome, Outcome::Fail(Failure::Refused));
    }

    #[tokio::test]
    async fn silence_passes_without_require_reply_and_fails_with_it() {
        let port = server(|_| None).await;
        let outcome = probe(&check(port, Some(b"x"), None), SHORT).await;
        assert_eq!(outcome, Outcome::pass("no ICMP error"));
        let outcome = probe(&check(port, Some(b"x"), required(None, 0, 255)), SHORT).await;
        assert_eq!(outcome, Outcome::Fail(Failure::Timeout(SHORT)));
    }

    #[tokio::test]
    async fn a_reply_that_does_not_fit_fails() {
        let port = server(|_| Some(b"NO".to_vec())).await;
        let wrong = probe(
            &check(port, Some(b"x"), required(Some("4f4b"), 0, 255)),
            SHORT,
        )
        .await;
        assert_eq!(
            wrong,
            Outcome::Fail(Failure::Reply(
                "reply differs from require_reply at byte 0".into()
            ))
        );
        let wildcard = probe(
            &check(port, Some(b"x"), required(Some("4x 4x"), 0, 255)),
            SHORT,
        )
        .await;
        assert!(wildcard.passed(), "{wildcard:?}");
        let short = probe(&check(port, Some(b"x"), required(None, 3, 255)), SHORT).await;
        assert_eq!(
            short,
            Outcome::Fail(Failure::Reply("reply of 2 bytes, not 3 to 255".into()))
        );
        let long = probe(&check(port, Some(b"x"), required(None, 0, 1)), SHORT).await;
        assert!(!long.passed(), "{long:?}");
    }

    #[tokio::test]
    async fn bindto_sets_the_source_address() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let source = Ipv4Addr::new(127, 0, 0, 2);
        let mut target = check(port, Some(b"x"), None);
        target.endpoint.bind = Some(source.into());
        let mut buffer = [0u8; 16];
        let (outcome, received) =
            tokio::join!(probe(&target, SHORT), socket.recv_from(&mut buffer));
        assert!(outcome.passed(), "{outcome:?}");
        assert_eq!(received.unwrap().1.ip(), source);
    }
}
