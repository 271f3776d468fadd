//! The listener on a loopback port, with raw TCP clients: good requests, bad ones, slow
//! ones and too many, and that none of them leaves anything behind.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::logic::{config::Timeouts, status::FlowTable};

fn document(interface: &str) -> Arc<Status> {
    Arc::new(Status {
        interface: interface.into(),
        xdp_mode: "generic".into(),
        timeouts: Timeouts::default(),
        counters: Vec::new(),
        flow_table: FlowTable {
            size: 1024,
            entries: 3,
        },
        services: Vec::new(),
        sync: Box::default(),
        bgp: None,
        deny: Vec::new(),
        service_lookup: Vec::new(),
    })
}

struct Server {
    address: SocketAddr,
    publish: watch::Sender<Arc<Status>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (publish, status) = watch::channel(document("eth0"));
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(listener, status, stop.clone()));
    Server {
        address,
        publish,
        stop,
        task,
    }
}

/// Sends `request` as is and reads until the server closes or `patience` passes.
async fn exchange(address: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_all(&mut stream).await
}

async fn read_all(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    match read.await {
        Ok(Ok(_)) => {}
        // A reset after a refusal is as good as a close.
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(error)) => panic!("reading: {error}"),
        Err(_) => panic!("the server kept the connection open: {answer:?}"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lvs\r\nConnection: close\r\n\r\n").into_bytes()
}

fn code(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("")
}

#[tokio::test]
async fn serves_the_latest_published_document() {
    let server = start().await;
    let answer = exchange(server.address, &get("/status.json")).await;
    assert_eq!(code(&answer), "200", "{answer}");
    assert!(answer.contains("\"interface\": \"eth0\""), "{answer}");

    server.publish.send_replace(document("eth1"));
    let answer = exchange(server.address, &get("/status.json")).await;
    assert!(answer.contains("\"interface\": \"eth1\""), "{answer}");

    let metrics = exchange(server.address, &get("/metrics")).await;
    assert_eq!(code(&metrics), "200");
    assert!(metrics.contains("lvs_flow_table_entries 3"), "{metrics}");
    let page = exchange(server.address, &get("/")).await;
    assert!(page.contains("content-security-policy"), "{page}");
    let head = exchange(server.address, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.ends_with("\r\n\r\n"), "no body after HEAD: {head}");
    server.stop.cancel();
    server.task.await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_errors_and_change_nothing() {
    let server = start().await;
    let check = |request: Vec<u8>, expected: &'static str| {
        let address = server.address;
        async move {
            let answer = exchange(address, &request).await;
            assert_eq!(code(&answer), expected, "{answer}");
        }
    };
    check(get("/nope"), "404").await;
    check(get("/metrics/../../etc/shadow"), "404").await;
    check(
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
        "405",
    )
    .await;
    check(b"GARBAGE\r\n\r\n".to_vec(), "400").await;
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEADER_BYTES * 2)
    );
    check(huge.into_bytes(), "431").await;
    // After all that, the listener answers as before.
    check(get("/metrics"), "200").await;
    server.stop.cancel();
    server.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let server = start().await;
    let mut slow = TcpStream::connect(server.address).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    // With the clock paused, time jumps to the server's header timeout once all are idle.
    let answer = read_all(&mut slow).await;
    assert!(!answer.contains(" 200 "), "{answer}");
    assert!(started.elapsed() >= HEADER_TIMEOUT);
    server.stop.cancel();
    server.task.await.unwrap();
}

#[tokio::test]
async fn connections_beyond_the_bound_are_closed_and_the_document_still_moves() {
    let server = start().await;
    // Clients that connect and say nothing hold every slot.
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        idle.push(TcpStream::connect(server.address).await.unwrap());
    }
    // Give the listener time to take them all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(server.address).await.unwrap();
    let _ = extra.write_all(&get("/metrics")).await;
    let answer = read_all(&mut extra).await;
    assert_eq!(
        answer, "",
        "one connection too many is closed without an answer"
    );

    // Publishing never waits for the listener.
    server.publish.send_replace(document("eth9"));
    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = exchange(server.address, &get("/status.json")).await;
    assert!(answer.contains("\"interface\": \"eth9\""), "{answer}");

    // Stopping ends every connection, idle ones included.
    server.stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("the listener stops with connections open")
        .unwrap();
    for mut stream in idle {
        assert_eq!(read_all(&mut stream).await, "");
    }
}
