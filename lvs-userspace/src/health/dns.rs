//! `DNS_CHECK`: one query over UDP (`message` builds it and judges the replies); the check
//! passes when the answer comes within `connect_timeout` with response code 0. Datagrams
//! that are not the answer are passed over, and the wait goes on.

use std::time::Duration;

use crate::health::{
    Failure, Outcome,
    udp::{self, io_failure},
};
use crate::logic::config::health::DnsProbe;

pub mod message;

use message::Reply;

/// Asks once and waits for the answer.
pub async fn probe(dns: &DnsProbe, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, exchange(dns)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(failure)) => Outcome::Fail(failure),
        Err(_) => Outcome::Fail(Failure::Timeout(timeout)),
    }
}

async fn exchange(dns: &DnsProbe) -> Result<Outcome, Failure> {
    let socket = udp::connect(&dns.endpoint)?;
    let id = udp::random_bytes(2);
    let sent = message::query(
        u16::from_be_bytes([id[0], id[1]]),
        &dns.name,
        dns.query_type,
    );
    socket.send(&sent).await.map_err(io_failure)?;
    // keepalived reads up to 768 bytes; a longer answer is still an answer, and its header
    // and question are all that is judged.
    let mut buffer = vec![0u8; 4096];
    loop {
        let length = socket.recv(&mut buffer).await.map_err(io_failure)?;
        match message::judge(&sent, &buffer[..length]) {
            Reply::Answer { answers } => {
                return Ok(Outcome::pass(format!(
                    "{} answers: {answers}",
                    dns.query_type
                )));
            }
            Reply::Error { rcode } => {
                let name = message::rcode_name(rcode);
                return Ok(Outcome::Fail(Failure::Reply(format!(
                    "rcode {rcode} ({name})"
                ))));
            }
            Reply::NotOurs(why) => tracing::debug!(
                "DNS_CHECK {}: a datagram passed over: {why}",
                dns.endpoint.connect
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::UdpSocket;

    use super::*;
    use crate::logic::config::health::DnsType;

    /// A DNS responder on loopback: for every query, the datagrams `answer` makes of it,
    /// sent in order.
    async fn responder(answer: fn(&[u8]) -> Vec<Vec<u8>>) -> u16 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            while let Ok((length, from)) = socket.recv_from(&mut buffer).await {
                for reply in answer(&buffer[..length]) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        port
    }

    /// The query turned into a response with `flags` and one answer counted.
    fn respond(query: &[u8], flags: u16) -> Vec<u8> {
        let mut reply = query.to_vec();
        reply[2..4].copy_from_slice(&flags.to_be_bytes());
        reply[6..8].copy_from_slice(&[0, 1]);
        reply
    }

    fn check(port: u16) -> DnsProbe {
        DnsProbe {
            endpoint: udp::loopback(port),
            query_type: DnsType::A,
            name: "example.test".into(),
        }
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn an_answer_passes() {
        let port = responder(|q| vec![respond(q, 0x8180)]).await;
        assert_eq!(
            probe(&check(port), SHORT).await,
            Outcome::pass("A answers: 1")
        );
    }

    #[tokio::test]
    async fn an_error_code_fails() {
        let port = responder(|q| vec![respond(q, 0x8182)]).await;
        assert_eq!(
            probe(&check(port), SHORT).await,
            Outcome::Fail(Failure::Reply("rcode 2 (SERVFAIL)".into()))
        );
    }

    #[tokio::test]
    async fn garbage_before_the_answer_is_passed_over() {
        let port = responder(|q| {
            let mut wrong_id = respond(q, 0x8183);
            wrong_id[0] ^= 0xff;
            vec![b"\x00".to_vec(), wrong_id, q.to_vec(), respond(q, 0x8180)]
        })
        .await;
        assert_eq!(
            probe(&check(port), SHORT).await,
            Outcome::pass("A answers: 1")
        );
    }

    #[tokio::test]
    async fn only_garbage_times_out() {
        let port = responder(|q| vec![q[..5].to_vec(), q.to_vec()]).await;
        assert_eq!(
            probe(&check(port), SHORT).await,
            Outcome::Fail(Failure::Timeout(SHORT))
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        drop(socket);
        assert_eq!(
            probe(&check(port), SHORT).await,
            Outcome::Fail(Failure::Refused)
        );
    }
}
