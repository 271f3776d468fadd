//! The status listener (`[director] metrics_listen`): HTTP/1.1 on TCP, serving what
//! `logic::web::respond` answers from the latest status document the daemon published.
//!
//! It never talks to the daemon's loop: the loop publishes a fresh document on a watch
//! channel (on the rate tick and after every change) and a request reads the latest one, so
//! no scrape, slow client or flood of requests can hold up the data plane's updates. Each
//! connection is bounded: at most [`MAX_CONNECTIONS`] at once (one more is closed at once),
//! request headers within [`MAX_HEADER_BYTES`] (hyper answers 431 beyond) and complete within
//! [`HEADER_TIMEOUT`], and a connection lives at most [`CONNECTION_LIFETIME`].

use std::{convert::Infallible, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    Request, Response,
    body::{Bytes, Incoming},
    header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::logic::{status::Status, web};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The most a request's head (request line and headers) may take; hyper's smallest buffer.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long a client has to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may stay open, however it is used.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves until `stop` is cancelled; every connection task ends before it returns.
pub async fn serve(
    listener: TcpListener,
    status: watch::Receiver<Arc<Status>>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(error) => {
                // Out of file descriptors, say: wait instead of spinning.
                warn!(%error, "status listener: accept failed");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "status listener: too many connections, closing one");
            drop(stream);
            continue;
        };
        let status = status.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request: Request<Incoming>| {
                // The latest document; the borrow ends before anything is written.
                let document = status.borrow().clone();
                async move { Ok::<_, Infallible>(answer(&request, &document)) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        debug!(%peer, %error, "status listener: connection ended");
                    }
                }
                () = tokio::time::sleep(CONNECTION_LIFETIME) => {}
                () = stop.cancelled() => {}
            }
        });
    }
    connections.shutdown().await;
}

fn answer(request: &Request<Incoming>, status: &Status) -> Response<Full<Bytes>> {
    let reply = web::respond(request.method().as_str(), request.uri().path(), status);
    let length = reply.body.len();
    let body = if reply.head {
        Bytes::new()
    } else {
        Bytes::from(reply.body)
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() =
        hyper::StatusCode::from_u16(reply.code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    for (name, value) in reply.headers {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests;
