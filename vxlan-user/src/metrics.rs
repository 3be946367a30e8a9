//! `--metrics ADDR:PORT`: the counters in the Prometheus text format.
//!
//! A small HTTP server on its own thread answers `GET /metrics` by reading
//! the datapath's maps (opened by the XDP program's id) and encoding them
//! with `prometheus-client`.

use std::{net::SocketAddr, thread};

use anyhow::{Result, anyhow};
use log::warn;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter as PromCounter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{maps::Maps, stats};

type Labels = Vec<(String, String)>;

/// The exposition of the datapath whose XDP program is `prog_id`.
pub fn render(maps: &Maps) -> Result<String> {
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
    let (mut learned, mut fixed) = (0i64, 0i64);
    for (_, e) in maps.fdb.iter().filter_map(Result::ok) {
        if e.is_static() {
            fixed += 1
        } else {
            learned += 1
        }
    }
    fdb.get_or_create(&vec![("kind".into(), "learned".into())])
        .set(learned);
    fdb.get_or_create(&vec![("kind".into(), "static".into())])
        .set(fixed);
    registry.register("fdb_entries", "FDB entries", fdb);
    let mut out = String::new();
    encode(&mut out, &registry).map_err(|e| anyhow!("encoding metrics: {e}"))?;
    Ok(out)
}

/// Serves `/metrics` on `addr` until the process exits.
pub fn serve(addr: SocketAddr, prog_id: u32) -> Result<()> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow!("cannot serve metrics on {addr}: {e}"))?;
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let resp = if req.url() != "/metrics" {
                    tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                } else {
                    match Maps::from_program(prog_id).and_then(|m| render(&m)) {
                        Ok(body) => tiny_http::Response::from_string(body).with_header(
                            tiny_http::Header::from_bytes(
                                &b"Content-Type"[..],
                                &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                            )
                            .expect("static header"),
                        ),
                        Err(e) => tiny_http::Response::from_string(format!("{e:#}\n"))
                            .with_status_code(500),
                    }
                };
                if let Err(e) = req.respond(resp) {
                    warn!("metrics: {e}");
                }
            }
        })?;
    Ok(())
}
