//! The control socket: how `vxlan-fwd vni|port|fdb ...` run from another
//! process reach the running forwarder, which applies every change
//! through its [`Dataplane`](crate::dataplane::Dataplane).
//!
//! A unix stream socket in the state directory (root's, mode 0700; see
//! [`crate::paths`]); the forwarder also checks each peer's credentials
//! (`SO_PEERCRED`) and serves root only. One JSON request per connection,
//! one JSON response line; a `Watch` request turns the connection into a
//! stream of FDB events, one JSON object per line.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixStream,
};

use crate::{config::VniLimits, dataplane::VniSpec, fdb::Op, paths};

/// How long a command waits for the forwarder's answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A request to the running forwarder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The spec's fields next to the tag (`vni`, `remotes`, ...).
    VniAdd(VniSpec),
    VniDel {
        vni: u32,
    },
    VniShow,
    PortAdd {
        name: String,
        vni: u32,
    },
    PortDel {
        name: String,
    },
    PortShow,
    /// `fdb add|replace|append|del` with the words `bridge fdb` takes.
    Fdb {
        op: Op,
        words: Vec<String>,
    },
    FdbFlush {
        vni: Option<u32>,
        learned: bool,
    },
    /// Stream FDB events until the connection closes.
    Watch,
}

/// The forwarder's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok { message: Option<String> },
    Error { error: String },
    Vnis { vnis: Vec<VniRow> },
    Ports { ports: Vec<PortRow> },
}

impl Response {
    pub fn ok() -> Self {
        Self::Ok { message: None }
    }
    pub fn from_result(r: Result<Option<String>>) -> Self {
        match r {
            Ok(message) => Self::Ok { message },
            Err(e) => Self::Error {
                error: format!("{e:#}"),
            },
        }
    }
}

/// One line of `vni show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VniRow {
    pub vni: u32,
    /// Where it came from: `config`, `runtime` or `etcd`.
    pub origin: String,
    /// `IPv4` or `IPv6`: the VNI's underlay family (of its remotes or
    /// group, else of the instance's local address).
    #[serde(default)]
    pub underlay: String,
    /// Default remote VTEPs (head-end replication).
    pub remotes: Vec<IpAddr>,
    /// The origin of each remote, in the same order.
    pub remote_origins: Vec<String>,
    pub group: Option<IpAddr>,
    pub host_if: Option<String>,
    pub ports: Vec<String>,
    /// This VNI's own limits (unset: the instance's).
    #[serde(default)]
    pub limits: VniLimits,
}

impl std::fmt::Display for VniRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(",")
            }
        };
        let remotes: Vec<String> = self.remotes.iter().map(ToString::to_string).collect();
        write!(
            f,
            "vni {} origin {} underlay {} remotes {} group {} host-if {} ports {}",
            self.vni,
            self.origin,
            self.underlay,
            list(&remotes),
            self.group.map_or_else(|| "-".to_owned(), |g| g.to_string()),
            self.host_if.as_deref().unwrap_or("-"),
            list(&self.ports),
        )
    }
}

/// One line of `port show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRow {
    pub name: String,
    /// 0 while the interface does not exist.
    pub ifindex: u32,
    pub vni: u32,
    pub origin: String,
    /// Our program is attached to it (it exists).
    pub attached: bool,
}

impl std::fmt::Display for PortRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ifindex {} vni {} origin {} {}",
            self.name,
            self.ifindex,
            self.vni,
            self.origin,
            if self.attached { "attached" } else { "waiting" }
        )
    }
}

/// The control socket of the forwarder in this network namespace: the one
/// on `iface`, or the only one.
pub fn find_socket(iface: Option<&str>) -> Result<PathBuf> {
    let found = paths::sockets_here()?;
    match iface {
        Some(i) => found
            .into_iter()
            .find(|(u, _)| u == i)
            .map(|(_, p)| p)
            .ok_or_else(|| anyhow!("no vxlan-fwd is running on '{i}' in this network namespace")),
        None => match found.as_slice() {
            [] => bail!("no vxlan-fwd is running in this network namespace"),
            [(_, p)] => Ok(p.clone()),
            many => bail!(
                "several forwarders run in this network namespace (on {}): give --iface",
                many.iter()
                    .map(|(u, _)| u.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

/// Connects and sends `req`; returns the connection's reader.
pub async fn send(iface: Option<&str>, req: &Request) -> Result<BufReader<UnixStream>> {
    let path = find_socket(iface)?;
    let mut stream = UnixStream::connect(&path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            anyhow!(
                "the forwarder's control socket {} is stale (it is not running)",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("connecting to {}", path.display()))
        }
    })?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    stream.write_all(line.as_bytes()).await?;
    Ok(BufReader::new(stream))
}

/// Sends `req` and waits for the answer; an `Error` answer is an error.
pub async fn call(iface: Option<&str>, req: &Request) -> Result<Response> {
    let exchange = async {
        let mut reader = send(iface, req).await?;
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .await
            .context("reading the forwarder's answer")?;
        if line.is_empty() {
            bail!("the forwarder closed the connection without an answer");
        }
        let resp: Response =
            serde_json::from_str(&line).context("the forwarder's answer is not understood")?;
        Ok(resp)
    };
    let resp = tokio::time::timeout(COMMAND_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("the forwarder did not answer within {COMMAND_TIMEOUT:?}"))??;
    match resp {
        Response::Error { error } => Err(anyhow!(error)),
        r => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs_vni_add() -> Request {
        Request::VniAdd(VniSpec {
            id: 7,
            ..VniSpec::default()
        })
    }

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::VniAdd(VniSpec {
                id: 7,
                remotes: vec!["10.0.0.1".parse().unwrap()],
                group: None,
                host_if: Some("vx7".into()),
                limits: VniLimits::default(),
            }),
            Request::VniAdd(VniSpec {
                id: 8,
                remotes: vec!["fd00:57::2".parse().unwrap()],
                group: Some("ff05::100".parse().unwrap()),
                host_if: None,
                limits: VniLimits {
                    allow_remote: Some(vec!["fd00:57::/64".parse().unwrap()]),
                    ..VniLimits::default()
                },
            }),
            Request::PortDel {
                name: "veth0".into(),
            },
            Request::Fdb {
                op: Op::Append,
                words: vec!["00:00:00:00:00:00".into()],
            },
            Request::Watch,
        ];
        for r in reqs {
            let s = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r, "{s}");
        }
        // The wire format of `vni add` (a forwarder of another version may
        // be the other end): the spec's fields next to the tag.
        let s = serde_json::to_string(&reqs_vni_add()).unwrap();
        assert_eq!(
            s,
            r#"{"request":"vni_add","vni":7,"remotes":[],"group":null,"host_if":null,"limits":{"max_fdb":null,"allow_remote":null,"port_max_fdb":null,"bum_pps":null}}"#
        );
        let s = serde_json::to_string(&Response::Error { error: "x".into() }).unwrap();
        assert_eq!(s, r#"{"result":"error","error":"x"}"#);
    }
}
