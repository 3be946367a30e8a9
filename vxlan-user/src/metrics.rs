//! `--metrics ADDR:PORT`: the counters in the Prometheus text format.
//!
//! A small HTTP server (hyper, on the forwarder's tokio runtime) answers
//! `GET /metrics` by reading the datapath's maps (opened once, by program
//! id) and encoding them with `prometheus-client`. It is bounded: a few
//! connections at once, each with a deadline, and the FDB's size (a walk of
//! the whole map, batched) is counted at most once a second, so scrapes
//! cost the forwarder next to nothing even at a million entries.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow};
use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use log::warn;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter as PromCounter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::Semaphore;

use crate::{maps::Maps, stats};

type Labels = Vec<(String, String)>;

/// The exposition of the datapath's maps.
pub fn render(maps: &Maps) -> Result<String> {
    render_with(maps, fdb_counts(maps)?)
}

/// The exposition, with the FDB's (learned, static) entry counts given.
fn render_with(maps: &Maps, (learned, fixed): (i64, i64)) -> Result<String> {
    let mut registry = Registry::with_prefix("vxlan_fwd");
    let events = Family::<Labels, PromCounter>::default();
    let drops = Family::<Labels, PromCounter>::default();
    for (c, n) in stats::read(maps)? {
        match c.name().strip_prefix("drop_") {
            Some(reason) => drops
                .get_or_create(&vec![("reason".into(), reason.into())])
                .inc_by(n),
            None => events
                .get_or_create(&vec![("event".into(), c.name().into())])
                .inc_by(n),
        };
    }
    registry.register("datapath", "Datapath events (per-CPU sums)", events);
    registry.register("drops", "Frames dropped, by reason", drops);
    let fdb = Family::<Labels, Gauge>::default();
    fdb.get_or_create(&vec![("kind".into(), "learned".into())])
        .set(learned);
    fdb.get_or_create(&vec![("kind".into(), "static".into())])
        .set(fixed);
    registry.register("fdb_entries", "FDB entries", fdb);
    let mut out = String::new();
    encode(&mut out, &registry).map_err(|e| anyhow!("encoding metrics: {e}"))?;
    Ok(out)
}

/// Most scrapes served at once; more connections are closed at once.
const MAX_CONNECTIONS: usize = 8;
/// A connection (request read, answer written) may take this long.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// The FDB's entry counts (a walk of the whole map) are refreshed at most
/// this often, however often it is scraped.
const FDB_COUNT_MAX_AGE: Duration = Duration::from_secs(1);

/// Binds `addr` (before anything is attached: a port that cannot be had
/// stops the start with nothing to undo).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow!("cannot serve metrics on {addr}: {e}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// The maps, opened once, and the last FDB count.
struct Source {
    maps: Maps,
    fdb: Option<(Instant, (i64, i64))>,
}

impl Source {
    fn render(&mut self) -> Result<String> {
        let fdb = match self.fdb {
            Some((at, n)) if at.elapsed() < FDB_COUNT_MAX_AGE => n,
            _ => {
                let n = fdb_counts(&self.maps)?;
                self.fdb = Some((Instant::now(), n));
                n
            }
        };
        render_with(&self.maps, fdb)
    }
}

/// (learned, static) entries: one batched walk.
fn fdb_counts(maps: &Maps) -> Result<(i64, i64)> {
    let (mut learned, mut fixed) = (0i64, 0i64);
    crate::batch::for_each(&maps.fdb, |_, e| {
        if e.is_learned() {
            learned += 1
        } else {
            fixed += 1
        }
    })?;
    Ok((learned, fixed))
}

/// Serves `GET /metrics` on `listener` (from [`bind`]) for the datapath
/// whose program is `prog_id`, on the running tokio runtime, until the
/// process exits: at most [`MAX_CONNECTIONS`] at once, each for at most
/// [`CONNECTION_TIMEOUT`].
pub fn serve(listener: std::net::TcpListener, prog_id: u32) -> Result<()> {
    let source = Arc::new(Mutex::new(Source {
        maps: Maps::from_program(prog_id)?,
        fdb: None,
    }));
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!("metrics: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue; // too many: closed at once
            };
            let source = source.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let source = source.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(req, source).await) }
                });
                let conn = http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            });
        }
    });
    Ok(())
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    source: Arc<Mutex<Source>>,
) -> Response<Full<Bytes>> {
    let text = |status: u16, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        r
    };
    if req.method() != hyper::Method::GET || req.uri().path() != "/metrics" {
        return text(404, "see GET /metrics\n".into());
    }
    // The walk of the FDB is a blocking syscall loop: off the runtime.
    let body = tokio::task::spawn_blocking(move || match source.lock() {
        Ok(mut s) => s.render(),
        Err(_) => Err(anyhow!("metrics state poisoned")),
    })
    .await;
    match body {
        Ok(Ok(body)) => {
            let mut r = text(200, body);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        Ok(Err(e)) => text(500, format!("{e:#}\n")),
        Err(e) => text(500, format!("{e}\n")),
    }
}
