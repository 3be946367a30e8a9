//! rtnetlink helpers of the userspace loader: link lookup and creation, the
//! uplink's addresses, route lookups and neighbour resolution (ARP for
//! IPv4, ND for IPv6), for both families alike.
//!
//! Everything goes through a `NETLINK_ROUTE` socket via [`rtnetlink`]; nothing
//! shells out to `ip`. Every request is bounded by a timeout
//! ([`REQUEST_TIMEOUT`]) so that a lost or undecodable kernel reply turns into
//! an error instead of a hang.

use std::{
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressScope},
    link::{
        AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoVeth, LinkAttribute, LinkFlags,
        LinkInfo as NlLinkInfo, LinkMessage, LinkXdp,
    },
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType, RouteVia},
};
use rtnetlink::{
    Handle, LinkMessageBuilder, LinkUnspec, LinkVeth,
    packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload},
};

/// Upper bound for a single netlink request (including the whole reply of a
/// dump).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `XDP_FLAGS_*` of linux/if_link.h, from aya's generated bindings.
pub use aya_obj::generated::{
    XDP_FLAGS_DRV_MODE, XDP_FLAGS_REPLACE, XDP_FLAGS_SKB_MODE, XDP_FLAGS_UPDATE_IF_NOEXIST,
};

use crate::config::IFNAME_MAX as MAX_IFNAME_LEN;

/// A rtnetlink connection bound to the network namespace that was current when
/// it was opened.
///
/// Cloning is cheap and all clones share the same socket; the background
/// connection task ends once the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: Handle,
}

/// What the loader needs to know about a network interface.
#[derive(Clone, Debug)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU (0 if the kernel did not report one).
    pub mtu: u32,
    /// Hardware address; all zeros if the link has none (or it is not 6
    /// bytes long).
    pub mac: [u8; 6],
    /// `IFLA_INFO_KIND`, e.g. `"veth"`, `"bridge"`, `"vxlan"`; `None` for
    /// physical NICs and loopback.
    pub kind: Option<String>,
    /// Administrative state (`IFF_UP`).
    pub up: bool,
    /// true when IFLA_LINK_NETNSID is present, i.e. the veth's peer lives in
    /// another network namespace.
    pub peer_in_other_netns: bool,
    /// Id of the XDP program attached to the link (IFLA_XDP / IFLA_XDP_PROG_ID),
    /// if any.
    pub xdp_prog_id: Option<u32>,
}

/// What the kernel's neighbour table says of an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Neighbour {
    /// Resolved (`stale`: not confirmed lately; a use re-probes it).
    Known { mac: [u8; 6], stale: bool },
    /// Resolution failed: the address does not answer.
    Failed,
    /// No entry, or resolution under way.
    Unknown,
}

/// A change of a link or of an IPv4 address, as rtnetlink announces it.
#[derive(Clone, Debug)]
pub enum LinkEvent {
    /// A link appeared or changed.
    Link(LinkInfo),
    /// A link disappeared.
    LinkGone { index: u32, name: String },
    /// An IPv4 or IPv6 address of link `index` was added, changed (an
    /// IPv6 address that finished duplicate address detection) or removed.
    Address { index: u32 },
    /// Events were lost (the socket overran): re-read what matters.
    Overrun,
}

/// Subscribes to link and address (IPv4 and IPv6) events of this network
/// namespace.
/// The stream ends when the returned receiver is dropped.
pub fn subscribe_links() -> anyhow::Result<tokio::sync::mpsc::Receiver<LinkEvent>> {
    use netlink_sys::{AsyncSocket as _, SocketAddr};
    const RTMGRP_LINK: u32 = 1;
    const RTMGRP_IPV4_IFADDR: u32 = 0x10;
    const RTMGRP_IPV6_IFADDR: u32 = 0x100;
    let runtime = tokio::runtime::Handle::try_current()
        .context("subscribe_links() must be called from within a tokio runtime")?;
    let (mut connection, handle, mut messages) =
        rtnetlink::new_connection().context("failed to open a NETLINK_ROUTE socket")?;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(
            0,
            RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
        ))
        .context("subscribing to link events")?;
    runtime.spawn(connection);
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    runtime.spawn(async move {
        let _handle = handle; // keeps the connection open
        while let Some((msg, _)) = messages.next().await {
            let ev = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                    LinkEvent::Link(link_info(m))
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                    let l = link_info(m);
                    LinkEvent::LinkGone {
                        index: l.index,
                        name: l.name,
                    }
                }
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m),
                ) => LinkEvent::Address {
                    index: m.header.index,
                },
                NetlinkPayload::Overrun(_) | NetlinkPayload::Error(_) => LinkEvent::Overrun,
                _ => continue,
            };
            if tx.send(ev).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

impl Netlink {
    /// Opens a rtnetlink socket in the current network namespace (spawns the
    /// connection task on the current tokio runtime).
    ///
    /// The socket stays in the namespace of the calling thread at the time of
    /// this call, whatever the thread does later. The runtime must have its
    /// time driver enabled (`#[tokio::main]` does), as requests are bounded by
    /// [`REQUEST_TIMEOUT`].
    pub fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("Netlink::new() must be called from within a tokio runtime")?;
        let (connection, handle, _unsolicited) =
            rtnetlink::new_connection().context("failed to open a NETLINK_ROUTE socket")?;
        runtime.spawn(connection);
        Ok(Self { handle })
    }

    /// Looks a link up by name; fails with `interface '{name}' not found` if
    /// there is no such link in this namespace.
    pub async fn link_by_name(&self, name: &str) -> anyhow::Result<LinkInfo> {
        check_ifname(name)?;
        let request = self.handle.link().get().match_name(name);
        link_reply(request, || format!("interface '{name}'")).await
    }

    /// Looks a link up by interface index.
    pub async fn link_by_index(&self, index: u32) -> anyhow::Result<LinkInfo> {
        if index == 0 {
            bail!("invalid interface index 0");
        }
        let request = self.handle.link().get().match_index(index);
        link_reply(request, || format!("interface with index {index}")).await
    }

    /// Lists all links of this network namespace.
    pub async fn links(&self) -> anyhow::Result<Vec<LinkInfo>> {
        let request = self.handle.link().get().execute();
        let messages: Vec<LinkMessage> =
            timed(async { request.try_collect().await.map_err(nl_error) })
                .await
                .context("failed to list network interfaces")?;
        Ok(messages.into_iter().map(link_info).collect())
    }

    /// First IPv4 address configured on the interface, if any.
    ///
    /// Primary addresses win over secondary ones; for point-to-point links
    /// this is the local address (`IFA_LOCAL`). An unknown `index` simply
    /// yields `None`.
    pub async fn first_ipv4(&self, index: u32) -> anyhow::Result<Option<Ipv4Addr>> {
        let mut request = self.handle.address().get().set_link_index_filter(index);
        request.message_mut().header.family = AddressFamily::Inet;
        let request = request.execute();
        let messages: Vec<_> = timed(async { request.try_collect().await.map_err(nl_error) })
            .await
            .with_context(|| format!("failed to list the IPv4 addresses of ifindex {index}"))?;

        let mut first_secondary = None;
        for msg in messages {
            let local = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let address = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let Some(ip) = local.or(address) else {
                continue;
            };
            if !msg.header.flags.contains(AddressHeaderFlags::Secondary) {
                return Ok(Some(ip));
            }
            first_secondary.get_or_insert(ip);
        }
        Ok(first_secondary)
    }

    /// The first global IPv6 address of the interface that can be a VTEP's
    /// source: scope global (no link-local), neither tentative (duplicate
    /// address detection still running) nor failed DAD nor deprecated.
    /// Permanent (configured) addresses win over autoconfigured ones. An
    /// unknown `index` simply yields `None`.
    pub async fn first_ipv6_global(&self, index: u32) -> anyhow::Result<Option<Ipv6Addr>> {
        let mut request = self.handle.address().get().set_link_index_filter(index);
        request.message_mut().header.family = AddressFamily::Inet6;
        let request = request.execute();
        let messages: Vec<_> = timed(async { request.try_collect().await.map_err(nl_error) })
            .await
            .with_context(|| format!("failed to list the IPv6 addresses of ifindex {index}"))?;
        let mut first_dynamic = None;
        for msg in messages {
            if msg.header.index != index || msg.header.scope != AddressScope::Universe {
                continue;
            }
            // IFA_FLAGS (32 bits) when present, else the header's 8.
            let flags = msg
                .attributes
                .iter()
                .find_map(|a| match a {
                    AddressAttribute::Flags(f) => Some(*f),
                    _ => None,
                })
                .unwrap_or_else(|| {
                    AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()))
                });
            if flags.intersects(
                AddressFlags::Tentative | AddressFlags::Dadfailed | AddressFlags::Deprecated,
            ) {
                continue;
            }
            let Some(ip) = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V6(ip)) => Some(*ip),
                _ => None,
            }) else {
                continue;
            };
            if ip.is_unicast_link_local() || ip.is_loopback() || ip.is_multicast() {
                continue;
            }
            if flags.contains(AddressFlags::Permanent) {
                return Ok(Some(ip));
            }
            first_dynamic.get_or_insert(ip);
        }
        Ok(first_dynamic)
    }

    /// Creates a veth pair `name` <-> `peer` in this namespace, both with
    /// `mtu`. The links are left down.
    pub async fn create_veth(&self, name: &str, peer: &str, mtu: u32) -> anyhow::Result<()> {
        check_ifname(name)?;
        check_ifname(peer)?;
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer)
            .mtu(mtu)
            .build();
        let msg = LinkVeth::new(name, peer)
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        match ack(self.handle.link().add(msg).execute()).await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Err(e.context(format!(
                "cannot create veth pair '{name}' <-> '{peer}': an interface with one of these \
                 names already exists"
            ))),
            Err(e) => Err(e.context(format!(
                "failed to create veth pair '{name}' <-> '{peer}' with mtu {mtu}"
            ))),
        }
    }

    /// Sets the link administratively up (`ip link set dev X up`).
    pub async fn set_up(&self, index: u32) -> anyhow::Result<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.change_link(msg, || format!("failed to set ifindex {index} up"))
            .await
    }

    /// Sends one link change (`RTM_SETLINK`); `what` says what failed.
    async fn change_link(
        &self,
        msg: LinkMessage,
        what: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        ack(self.handle.link().change(msg).execute())
            .await
            .with_context(what)
    }

    /// Sets the MTU of a link.
    pub async fn set_mtu(&self, index: u32, mtu: u32) -> anyhow::Result<()> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.change_link(msg, || format!("failed to set the MTU of ifindex {index}"))
            .await
    }

    /// Sets the XDP program of a link through netlink (`IFLA_XDP`): `fd`
    /// attaches it (`None` detaches), `flags` are `XDP_FLAGS_*`, and
    /// `expected` with `XDP_FLAGS_REPLACE` makes it an atomic replacement of
    /// that program. Unlike a bpf_link, such an attachment outlives the
    /// process that made it.
    pub async fn set_xdp(
        &self,
        index: u32,
        fd: Option<std::os::fd::RawFd>,
        flags: u32,
        expected: Option<std::os::fd::RawFd>,
    ) -> anyhow::Result<()> {
        let mut nlas = vec![LinkXdp::Fd(fd.unwrap_or(-1))];
        if flags != 0 {
            nlas.push(LinkXdp::Flags(flags));
        }
        if let Some(e) = expected {
            nlas.push(LinkXdp::ExpectedFd(e as u32));
        }
        let msg = LinkUnspec::new_with_index(index)
            .append_extra_attribute(LinkAttribute::Xdp(nlas))
            .build();
        self.change_link(msg, || {
            format!("setting the XDP program of ifindex {index}")
        })
        .await
    }

    /// How many tc filters a link has on its ingress and egress hooks.
    pub async fn clsact_filter_count(&self, index: u32) -> anyhow::Result<usize> {
        let mut n = 0;
        for egress in [false, true] {
            let req = self.handle.traffic_filter(index as i32).get();
            let req = if egress { req.egress() } else { req.ingress() };
            let stream = req.execute();
            n += timed(async {
                futures::pin_mut!(stream);
                let mut count = 0;
                while let Some(m) = stream.try_next().await.map_err(nl_error)? {
                    // Each filter comes as a chain head and its instances;
                    // only those with a handle are filters.
                    if m.header.handle.major != 0 || m.header.handle.minor != 0 {
                        count += 1;
                    }
                }
                Ok::<_, anyhow::Error>(count)
            })
            .await
            .with_context(|| format!("listing the tc filters of ifindex {index}"))?;
        }
        Ok(n)
    }

    /// The eBPF program ids of the cls_bpf filters on a link's tc ingress
    /// hook.
    pub async fn tc_ingress_prog_ids(&self, index: u32) -> anyhow::Result<Vec<u32>> {
        use netlink_packet_route::tc::{TcAttribute, TcFilterBpfOption, TcOption};
        let stream = self
            .handle
            .traffic_filter(index as i32)
            .get()
            .ingress()
            .execute();
        timed(async {
            futures::pin_mut!(stream);
            let mut ids = Vec::new();
            while let Some(m) = stream.try_next().await.map_err(nl_error)? {
                for a in &m.attributes {
                    if let TcAttribute::Options(opts) = a {
                        for o in opts {
                            if let TcOption::Bpf(TcFilterBpfOption::ProgId(id)) = o {
                                ids.push(*id);
                            }
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>(ids)
        })
        .await
        .with_context(|| format!("listing the tc filters of ifindex {index}"))
    }

    /// Removes the clsact qdisc of a link (like `tc qdisc del dev X
    /// clsact`), and with it every filter on it.
    pub async fn del_clsact(&self, index: u32) -> anyhow::Result<()> {
        use netlink_packet_route::tc::{TcAttribute, TcHandle as NlTcHandle};
        let mut req = self.handle.qdisc().del(index as i32);
        let msg = req.message_mut();
        msg.header.parent = NlTcHandle::CLSACT;
        msg.header.handle = NlTcHandle {
            major: 0xffff,
            minor: 0,
        };
        msg.attributes.push(TcAttribute::Kind("clsact".to_owned()));
        ack(req.execute())
            .await
            .with_context(|| format!("removing clsact from ifindex {index}"))
    }

    /// Deletes a link (for a veth, both ends go away).
    pub async fn delete_link(&self, index: u32) -> anyhow::Result<()> {
        ack(self.handle.link().del(index).execute())
            .await
            .with_context(|| format!("failed to delete ifindex {index}"))
    }

    /// Disable IPv6 address generation on a link (IFLA_INET6_ADDR_GEN_MODE =
    /// none) so it never sends ND/RS on its own. Best effort is fine but
    /// return errors.
    ///
    /// Best called before the link is set up: addresses already generated
    /// are not removed. Fails with `EAFNOSUPPORT` when IPv6 is disabled on
    /// the link, which callers may treat as success.
    pub async fn set_addrgenmode_none(&self, index: u32) -> anyhow::Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
            )]))
            .build();
        self.change_link(msg, || {
            format!("failed to set IPv6 addrgenmode none on ifindex {index}")
        })
        .await
    }

    /// Route lookup (RTM_GETROUTE for a host route, like `ip route get`),
    /// IPv4 or IPv6: returns (output ifindex, next hop) where next hop is
    /// the gateway if the route has one (of either family: an IPv4 route
    /// may have an IPv6 next hop), else `dst` itself.
    ///
    /// Fails if there is no route, or if `dst` is an address of this host
    /// (its route would go through loopback).
    pub async fn route_get(&self, dst: IpAddr) -> anyhow::Result<(u32, IpAddr)> {
        // Only family, prefix length and destination are set so that the
        // request is also valid for sockets with NETLINK_GET_STRICT_CHK.
        let mut msg = RouteMessage::default();
        match dst {
            IpAddr::V4(a) => {
                msg.header.address_family = AddressFamily::Inet;
                msg.header.destination_prefix_length = 32;
                msg.attributes
                    .push(RouteAttribute::Destination(RouteAddress::Inet(a)));
            }
            IpAddr::V6(a) => {
                msg.header.address_family = AddressFamily::Inet6;
                msg.header.destination_prefix_length = 128;
                msg.attributes
                    .push(RouteAttribute::Destination(RouteAddress::Inet6(a)));
            }
        }
        let request = self.handle.route().get(msg).execute();
        let route = timed(async {
            futures::pin_mut!(request);
            request.try_next().await.map_err(nl_error)
        })
        .await
        .with_context(|| format!("route lookup for {dst} failed"))?
        .ok_or_else(|| anyhow!("route lookup for {dst} failed: the kernel returned no route"))?;

        if route.header.kind == RouteType::Local {
            bail!("route lookup for {dst}: {dst} is a local address of this host");
        }
        let mut oif = None;
        let mut gateway = None;
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Oif(index) => oif = Some(*index),
                RouteAttribute::Gateway(RouteAddress::Inet(ip))
                | RouteAttribute::Via(RouteVia::Inet(ip)) => gateway = Some(IpAddr::V4(*ip)),
                RouteAttribute::Gateway(RouteAddress::Inet6(ip))
                | RouteAttribute::Via(RouteVia::Inet6(ip)) => gateway = Some(IpAddr::V6(*ip)),
                RouteAttribute::Via(via) => {
                    bail!(
                        "route to {dst} uses a next hop of another kind ({via:?}), which is unsupported"
                    )
                }
                _ => {}
            }
        }
        let oif = oif.ok_or_else(|| anyhow!("route to {dst} has no output interface"))?;
        Ok((oif, gateway.unwrap_or(dst)))
    }

    /// Ask the kernel to resolve the neighbour `ip` on `ifindex` (RTM_NEWNEIGH
    /// with NTF_USE and NLM_F_CREATE|NLM_F_REPLACE, no lladdr), like `ip neigh
    /// replace IP dev X use` - it starts ARP (IPv4) or neighbour discovery
    /// (IPv6) if the entry is missing or stale and never overrides a
    /// resolved address.
    ///
    /// Static (`PERMANENT`) and `NOARP` entries are left alone: the kernel
    /// would otherwise strip the `PERMANENT` state of an existing entry when
    /// it sees NTF_USE.
    pub async fn kick_neighbour(&self, ifindex: u32, ip: IpAddr) -> anyhow::Result<()> {
        if let Some(entry) = self.neighbour_entry(ifindex, ip).await?
            && matches!(
                entry.header.state,
                NeighbourState::Permanent | NeighbourState::Noarp
            )
        {
            return Ok(());
        }
        // The state is ignored by the kernel with NTF_USE except when the
        // entry gets created, where NUD_PERMANENT (what iproute2 sends) would
        // exempt it from garbage collection; NUD_NONE does not.
        let request = self
            .handle
            .neighbours()
            .add(ifindex, ip)
            .state(NeighbourState::None)
            .flags(NeighbourFlags::Use)
            .replace()
            .execute();
        ack(request).await.with_context(|| {
            format!("failed to trigger neighbour resolution of {ip} on ifindex {ifindex}")
        })
    }

    /// Link-layer address of a neighbour if the kernel has a valid
    /// (REACHABLE/STALE/DELAY/PROBE/PERMANENT) entry.
    /// What the kernel knows of neighbour `ip` on `ifindex`.
    pub async fn neighbour(&self, ifindex: u32, ip: IpAddr) -> anyhow::Result<Neighbour> {
        let Some(entry) = self.neighbour_entry(ifindex, ip).await? else {
            return Ok(Neighbour::Unknown);
        };
        if entry.header.state == NeighbourState::Failed {
            return Ok(Neighbour::Failed);
        }
        match self.neighbour_mac(ifindex, ip).await? {
            Some(mac) => Ok(Neighbour::Known {
                mac,
                stale: entry.header.state == NeighbourState::Stale,
            }),
            None => Ok(Neighbour::Unknown),
        }
    }

    /// Deletes the kernel's neighbour entry for `ip` on `ifindex` (unless
    /// permanent), so that the next use resolves it afresh.
    pub async fn forget_neighbour(&self, ifindex: u32, ip: IpAddr) -> anyhow::Result<()> {
        let Some(entry) = self.neighbour_entry(ifindex, ip).await? else {
            return Ok(());
        };
        if matches!(
            entry.header.state,
            NeighbourState::Permanent | NeighbourState::Noarp
        ) {
            return Ok(());
        }
        ack(self.handle.neighbours().del(entry).execute())
            .await
            .with_context(|| format!("failed to delete neighbour {ip} on ifindex {ifindex}"))
    }

    pub async fn neighbour_mac(&self, ifindex: u32, ip: IpAddr) -> anyhow::Result<Option<[u8; 6]>> {
        let Some(entry) = self.neighbour_entry(ifindex, ip).await? else {
            return Ok(None);
        };
        if !matches!(
            entry.header.state,
            NeighbourState::Reachable
                | NeighbourState::Stale
                | NeighbourState::Delay
                | NeighbourState::Probe
                | NeighbourState::Permanent
        ) {
            return Ok(None);
        }
        let Some(lladdr) = entry.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(lladdr) => Some(lladdr),
            _ => None,
        }) else {
            return Ok(None);
        };
        let mac = <[u8; 6]>::try_from(lladdr.as_slice()).map_err(|_| {
            anyhow!(
                "neighbour {ip} on ifindex {ifindex} has a {}-byte link-layer address, not an \
                 Ethernet one",
                lladdr.len()
            )
        })?;
        Ok(Some(mac))
    }

    /// The kernel's neighbour entry for `ip` on `ifindex`, if there is one
    /// (in whatever state).
    async fn neighbour_entry(
        &self,
        ifindex: u32,
        ip: IpAddr,
    ) -> anyhow::Result<Option<NeighbourMessage>> {
        let what = || format!("failed to look up neighbour {ip} on ifindex {ifindex}");
        // rtnetlink only offers neighbour dumps; a targeted RTM_GETNEIGH
        // (Linux >= 5.0) avoids walking the whole table on every call.
        let mut msg = NeighbourMessage::default();
        msg.header.family = neigh_family(&ip);
        msg.header.ifindex = ifindex;
        msg.attributes
            .push(NeighbourAttribute::Destination(neigh_address(ip)));
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetNeighbour(msg));
        request.header.flags = NLM_F_REQUEST;
        let mut handle = self.handle.clone();

        let reply = timed(async {
            let mut replies = handle.request(request).map_err(nl_error)?;
            while let Some(reply) = replies.next().await {
                match reply.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(entry)) => {
                        return Ok(Some(entry));
                    }
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(anyhow::Error::new(e.to_io()));
                    }
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => {}
                    other => bail!("unexpected reply to RTM_GETNEIGH: {other:?}"),
                }
            }
            Ok(None)
        })
        .await;

        match reply {
            Ok(entry) => Ok(entry),
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Err(e
                .context(format!("interface with index {ifindex} not found"))
                .context(what())),
            // Kernels older than 5.0 only support dumps.
            Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => self
                .neighbour_entry_from_dump(ifindex, ip)
                .await
                .with_context(what),
            Err(e) => Err(e.context(what())),
        }
    }

    /// Slow path of [`Self::neighbour_entry`]: dump the neighbour table of
    /// `ip`'s family and pick the entry.
    async fn neighbour_entry_from_dump(
        &self,
        ifindex: u32,
        ip: IpAddr,
    ) -> anyhow::Result<Option<NeighbourMessage>> {
        let want = neigh_address(ip);
        let request = self
            .handle
            .neighbours()
            .get()
            .set_address_family(neigh_family(&ip))
            .execute();
        let entries: Vec<NeighbourMessage> =
            timed(async { request.try_collect().await.map_err(nl_error) }).await?;
        Ok(entries.into_iter().find(|entry| {
            entry.header.ifindex == ifindex
                && entry
                    .attributes
                    .iter()
                    .any(|a| matches!(a, NeighbourAttribute::Destination(dst) if *dst == want))
        }))
    }
}

/// The address family of neighbour entries for `ip`.
fn neigh_family(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// `ip` as a neighbour entry's destination.
fn neigh_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

/// Parses a MAC address written as six hex octets separated by `:` or `-`
/// (`aa:bb:cc:dd:ee:ff`; one-digit octets are accepted, as `ip` does).
pub fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let invalid =
        || anyhow!("invalid MAC address '{s}': expected six hex octets like aa:bb:cc:dd:ee:ff");
    let separator = if s.contains('-') { '-' } else { ':' };
    let mut mac = [0u8; 6];
    let mut octets = s.split(separator);
    for byte in &mut mac {
        let octet = octets.next().ok_or_else(invalid)?;
        if octet.is_empty() || octet.len() > 2 || !octet.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        *byte = u8::from_str_radix(octet, 16).map_err(|_| invalid())?;
    }
    if octets.next().is_some() {
        return Err(invalid());
    }
    Ok(mac)
}

/// Formats a MAC address as lower-case `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Converts a kernel link message into a [`LinkInfo`].
fn link_info(msg: LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        mtu: 0,
        mac: [0; 6],
        kind: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        peer_in_other_netns: false,
        xdp_prog_id: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => info.name = name,
            LinkAttribute::Mtu(mtu) => info.mtu = mtu,
            LinkAttribute::Address(address) => {
                if let Ok(mac) = <[u8; 6]>::try_from(address.as_slice()) {
                    info.mac = mac;
                }
            }
            LinkAttribute::LinkInfo(infos) => {
                for nested in infos {
                    if let NlLinkInfo::Kind(kind) = nested {
                        info.kind = Some(kind.to_string());
                    }
                }
            }
            LinkAttribute::LinkNetNsId(_) => info.peer_in_other_netns = true,
            LinkAttribute::Xdp(xdp) => info.xdp_prog_id = xdp_prog_id(&xdp),
            _ => {}
        }
    }
    info
}

/// Program id out of `IFLA_XDP`. The kernel only sends `IFLA_XDP_PROG_ID`
/// when a single program is attached; with several (driver + generic, ...)
/// only the per-mode ids are present, of which the first one is returned.
fn xdp_prog_id(xdp: &[LinkXdp]) -> Option<u32> {
    let find = |pick: fn(&LinkXdp) -> Option<u32>| xdp.iter().find_map(pick).filter(|&id| id != 0);
    find(|a| match a {
        LinkXdp::ProgId(id) => Some(*id),
        _ => None,
    })
    .or_else(|| {
        find(|a| match a {
            LinkXdp::DrvProgId(id) => Some(*id),
            _ => None,
        })
    })
    .or_else(|| {
        find(|a| match a {
            LinkXdp::SkbProgId(id) => Some(*id),
            _ => None,
        })
    })
    .or_else(|| {
        find(|a| match a {
            LinkXdp::HwProgId(id) => Some(*id),
            _ => None,
        })
    })
}

/// Rejects names the kernel would refuse (see `dev_valid_name()`), with a
/// readable message instead of a bare `EINVAL`.
fn check_ifname(name: &str) -> anyhow::Result<()> {
    if name.is_empty() {
        bail!("empty interface name");
    }
    if name.len() > MAX_IFNAME_LEN {
        bail!("interface name '{name}' is too long (at most {MAX_IFNAME_LEN} bytes)");
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        bail!("invalid interface name '{name}'");
    }
    Ok(())
}

/// Runs one netlink exchange, failing after [`REQUEST_TIMEOUT`].
async fn timed<T>(request: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .unwrap_or_else(|_| {
            Err(anyhow!(
                "no reply from the kernel within {REQUEST_TIMEOUT:?} (a reply may have failed to \
             decode; see the netlink_proto log target)"
            ))
        })
}

/// The one link `request` asks for; `which` names it in the errors
/// (`{which} not found`, `failed to look up {which}`).
async fn link_reply(
    request: rtnetlink::LinkGetRequest,
    which: impl Fn() -> String,
) -> anyhow::Result<LinkInfo> {
    let request = request.execute();
    let reply = timed(async {
        futures::pin_mut!(request);
        request.try_next().await.map_err(nl_error)
    })
    .await;
    match reply {
        Ok(Some(msg)) => Ok(link_info(msg)),
        Ok(None) => bail!("{} not found", which()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => bail!("{} not found", which()),
        Err(e) => Err(e.context(format!("failed to look up {}", which()))),
    }
}

/// Sends one request whose only answer is an acknowledgement.
async fn ack(request: impl Future<Output = Result<(), rtnetlink::Error>>) -> anyhow::Result<()> {
    timed(async { request.await.map_err(nl_error) }).await
}

/// Converts an rtnetlink error; kernel errors become [`io::Error`]s so that
/// they read like `No such device (os error 19)` and keep their errno.
fn nl_error(err: rtnetlink::Error) -> anyhow::Error {
    match err {
        rtnetlink::Error::NetlinkError(msg) => anyhow::Error::new(msg.to_io()),
        other => anyhow::Error::new(other),
    }
}

/// The errno carried by an error made by [`nl_error`], if any.
fn errno(err: &anyhow::Error) -> Option<i32> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<io::Error>()?.raw_os_error())
}

#[cfg(test)]
mod tests {
    use nix::sched::{CloneFlags, setns, unshare};

    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac = [0x02, 0xab, 0x00, 0x1f, 0xcd, 0xef];
        assert_eq!(format_mac(&mac), "02:ab:00:1f:cd:ef");
        assert_eq!(parse_mac("02:ab:00:1f:cd:ef").unwrap(), mac);
        assert_eq!(parse_mac("02:AB:00:1F:CD:EF").unwrap(), mac);
        assert_eq!(parse_mac("02-ab-00-1f-cd-ef").unwrap(), mac);
        assert_eq!(parse_mac("2:ab:0:1f:cd:ef").unwrap(), mac);
        assert_eq!(format_mac(&[0; 6]), "00:00:00:00:00:00");
        assert_eq!(format_mac(&[0xff; 6]), "ff:ff:ff:ff:ff:ff");
    }

    #[test]
    fn parse_mac_rejects_garbage() {
        for bad in [
            "",
            "02:ab:00:1f:cd",
            "02:ab:00:1f:cd:ef:00",
            "02:ab:00:1f:cd:",
            "02:ab:00:1f::ef",
            "02:ab:00:1f:cd:eg",
            "02:ab:00:1f:cd:+f",
            "002:ab:00:1f:cd:ef",
            "02:ab-00:1f:cd:ef",
            "02ab001fcdef",
            " 02:ab:00:1f:cd:ef",
        ] {
            let err = parse_mac(bad).expect_err(bad);
            assert!(
                err.to_string().contains("invalid MAC address"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn ifname_validation() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("a23456789012345").is_ok());
        assert!(check_ifname("a234567890123456").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
        assert!(check_ifname("a b").is_err());
        assert!(check_ifname("..").is_err());
    }

    /// Runs `f` on a dedicated thread moved into a brand-new, empty network
    /// namespace, so nothing of the host's namespace can be touched. Returns
    /// `None` (test skipped) when namespaces cannot be created, e.g. when not
    /// running as root. The namespace, and every interface in it, disappears
    /// when the thread ends, whether `f` succeeded or panicked.
    fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let thread = std::thread::spawn(move || {
            if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
                eprintln!("skipping: unshare(CLONE_NEWNET) failed: {e}");
                return None;
            }
            Some(f())
        });
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Opens the network namespace of the calling thread.
    fn current_netns() -> std::fs::File {
        std::fs::File::open("/proc/thread-self/ns/net").expect("open /proc/thread-self/ns/net")
    }

    async fn neighbour_state(nl: &Netlink, ifindex: u32, ip: IpAddr) -> Option<NeighbourState> {
        nl.neighbour_entry(ifindex, ip)
            .await
            .unwrap()
            .map(|entry| entry.header.state)
    }

    /// End-to-end test against the kernel, in two private network
    /// namespaces: "A" (the test thread) and "B" (holding the veth peer).
    #[test]
    fn kernel_round_trip() {
        let ran = in_private_netns(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(kernel_round_trip_in_netns());
        });
        if ran.is_none() {
            eprintln!("kernel_round_trip skipped: needs CAP_SYS_ADMIN");
        }
    }

    async fn kernel_round_trip_in_netns() {
        // Namespace B: a second private namespace, with its own socket. The
        // socket keeps the namespace it was created in.
        let ns_a = current_netns();
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let ns_b = current_netns();
        let nl_b = Netlink::new().unwrap();
        setns(&ns_a, CloneFlags::CLONE_NEWNET).expect("setns back to A");
        let nl = Netlink::new().unwrap();

        // Links.
        let lo = nl.link_by_name("lo").await.unwrap();
        assert_eq!(lo.kind, None);
        assert!(!lo.up);
        let err = nl.link_by_name("nlt-nope").await.unwrap_err();
        assert_eq!(err.to_string(), "interface 'nlt-nope' not found");
        assert!(nl.link_by_name("much-too-long-name").await.is_err());

        nl.create_veth("nlt0", "nlt1", 1400).await.unwrap();
        let err = nl.create_veth("nlt0", "nlt2", 1400).await.unwrap_err();
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");
        let veth = nl.link_by_name("nlt0").await.unwrap();
        let peer = nl.link_by_name("nlt1").await.unwrap();
        eprintln!("{veth:?}\n{peer:?}");
        assert_eq!(veth.kind.as_deref(), Some("veth"));
        assert_eq!(peer.kind.as_deref(), Some("veth"));
        assert_eq!((veth.mtu, peer.mtu), (1400, 1400));
        assert!(!veth.up && !peer.up);
        assert!(!veth.peer_in_other_netns);
        assert_ne!(veth.mac, [0; 6]);
        assert_eq!(veth.xdp_prog_id, None);
        assert_eq!(nl.link_by_index(veth.index).await.unwrap().name, "nlt0");
        let err = nl.link_by_index(9999).await.unwrap_err();
        assert!(err.to_string().contains("not found"), "{err:#}");
        let mut names: Vec<_> = nl
            .links()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        names.sort();
        assert_eq!(names, ["lo", "nlt0", "nlt1"]);

        // addrgenmode none, checked on the raw link message.
        nl.set_addrgenmode_none(veth.index).await.unwrap();
        let request = nl.handle.link().get().match_index(veth.index).execute();
        futures::pin_mut!(request);
        let raw = request.try_next().await.unwrap().unwrap();
        let mode = raw.attributes.iter().find_map(|a| match a {
            LinkAttribute::AfSpecUnspec(specs) => specs.iter().find_map(|s| match s {
                AfSpecUnspec::Inet6(inet6) => inet6.iter().find_map(|i| match i {
                    AfSpecInet6::AddrGenMode(mode) => Some(*mode),
                    _ => None,
                }),
                _ => None,
            }),
            _ => None,
        });
        assert_eq!(mode, Some(In6AddrGenMode::None));

        // Move the peer to namespace B and configure it there.
        {
            use std::os::fd::AsRawFd as _;
            let msg = LinkUnspec::new_with_index(peer.index)
                .setns_by_fd(ns_b.as_raw_fd())
                .build();
            nl.handle.link().change(msg).execute().await.unwrap();
        }
        assert!(nl.link_by_name("nlt1").await.is_err());
        assert!(nl.link_by_name("nlt0").await.unwrap().peer_in_other_netns);
        let peer_b = nl_b.link_by_name("nlt1").await.unwrap();
        assert!(peer_b.peer_in_other_netns);
        nl_b.handle
            .address()
            .add(peer_b.index, "10.99.0.3".parse().unwrap(), 24)
            .execute()
            .await
            .unwrap();
        nl_b.set_up(peer_b.index).await.unwrap();

        // Addresses.
        assert_eq!(nl.first_ipv4(veth.index).await.unwrap(), None);
        for (ip, plen) in [("10.99.0.1", 24), ("10.99.0.7", 24)] {
            nl.handle
                .address()
                .add(veth.index, ip.parse().unwrap(), plen)
                .execute()
                .await
                .unwrap();
        }
        assert_eq!(
            nl.first_ipv4(veth.index).await.unwrap(),
            Some(Ipv4Addr::new(10, 99, 0, 1))
        );
        assert_eq!(nl.first_ipv4(lo.index).await.unwrap(), None);
        nl.set_up(veth.index).await.unwrap();
        assert!(nl.link_by_index(veth.index).await.unwrap().up);

        // Routes.
        let on_link = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2));
        let gw4 = Ipv4Addr::new(10, 99, 0, 3);
        let gateway = IpAddr::V4(gw4);
        assert_eq!(nl.route_get(on_link).await.unwrap(), (veth.index, on_link));
        nl.handle
            .route()
            .add(
                rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(Ipv4Addr::new(10, 200, 0, 0), 16)
                    .gateway(gw4)
                    .build(),
            )
            .execute()
            .await
            .unwrap();
        assert_eq!(
            nl.route_get(Ipv4Addr::new(10, 200, 1, 1).into())
                .await
                .unwrap(),
            (veth.index, gateway)
        );
        let err = nl
            .route_get(Ipv4Addr::new(10, 99, 0, 1).into())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("local address"), "{err:#}");
        let err = nl
            .route_get(Ipv4Addr::new(192, 0, 2, 1).into())
            .await
            .unwrap_err();
        eprintln!("unroutable: {err:#}");
        assert_eq!(errno(&err), Some(libc::ENETUNREACH), "{err:#}");

        // Neighbours: nobody answers for 10.99.0.2.
        assert_eq!(neighbour_state(&nl, veth.index, on_link).await, None);
        assert_eq!(nl.neighbour_mac(veth.index, on_link).await.unwrap(), None);
        nl.kick_neighbour(veth.index, on_link).await.unwrap();
        let state = neighbour_state(&nl, veth.index, on_link).await;
        assert!(
            matches!(
                state,
                Some(NeighbourState::Incomplete | NeighbourState::Failed)
            ),
            "{state:?}"
        );
        if let Ok(out) = std::process::Command::new("ip")
            .args(["-4", "neigh", "show"])
            .output()
            && out.status.success()
        {
            let out = String::from_utf8_lossy(&out.stdout);
            eprintln!("ip -4 neigh show:\n{out}");
            assert!(out.contains("10.99.0.2 dev nlt0"), "{out}");
            assert!(
                out.contains("INCOMPLETE") || out.contains("FAILED"),
                "{out}"
            );
        }
        assert_eq!(nl.neighbour_mac(veth.index, on_link).await.unwrap(), None);
        // Kicking again while resolution is in progress is harmless.
        nl.kick_neighbour(veth.index, on_link).await.unwrap();

        // ...but 10.99.0.3, in namespace B, does.
        nl.kick_neighbour(veth.index, gateway).await.unwrap();
        let mut mac = None;
        for _ in 0..100 {
            mac = nl.neighbour_mac(veth.index, gateway).await.unwrap();
            if mac.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(mac, Some(peer_b.mac));
        assert_eq!(
            neighbour_state(&nl, veth.index, gateway).await,
            Some(NeighbourState::Reachable)
        );
        // A resolved entry is neither overridden nor downgraded.
        nl.kick_neighbour(veth.index, gateway).await.unwrap();
        assert_eq!(
            nl.neighbour_mac(veth.index, gateway).await.unwrap(),
            Some(peer_b.mac)
        );

        // Static entries are reported and survive a kick.
        let static_ip = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 9));
        let static_mac = parse_mac("02:00:00:00:00:09").unwrap();
        nl.handle
            .neighbours()
            .add(veth.index, static_ip)
            .link_layer_address(&static_mac)
            .state(NeighbourState::Permanent)
            .execute()
            .await
            .unwrap();
        assert_eq!(
            nl.neighbour_mac(veth.index, static_ip).await.unwrap(),
            Some(static_mac)
        );
        nl.kick_neighbour(veth.index, static_ip).await.unwrap();
        assert_eq!(
            neighbour_state(&nl, veth.index, static_ip).await,
            Some(NeighbourState::Permanent)
        );
        assert_eq!(
            nl.neighbour_mac(veth.index, static_ip).await.unwrap(),
            Some(static_mac)
        );
        assert!(nl.neighbour_mac(9999, static_ip).await.is_err());

        // IPv6: the uplink's global address (not link-local, not
        // tentative), a route lookup and neighbour discovery.
        let a6: Ipv6Addr = "fd00:99::1".parse().unwrap();
        let b6: Ipv6Addr = "fd00:99::3".parse().unwrap();
        let add6 = |nl: &Netlink, index: u32, ip: Ipv6Addr, nodad: bool| {
            let mut req = nl.handle.address().add(index, IpAddr::V6(ip), 64);
            if nodad {
                req.message_mut()
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            req.execute()
        };
        add6(&nl_b, peer_b.index, b6, true).await.unwrap();
        // With duplicate address detection running, not an address yet.
        add6(&nl, veth.index, "fd00:98::1".parse().unwrap(), false)
            .await
            .unwrap();
        assert_eq!(nl.first_ipv6_global(veth.index).await.unwrap(), None);
        // A link-local address (ND solicits from one; addrgenmode is none
        // here): never a VTEP's.
        add6(&nl, veth.index, "fe80::1".parse().unwrap(), true)
            .await
            .unwrap();
        add6(&nl, veth.index, a6, true).await.unwrap();
        assert_eq!(nl.first_ipv6_global(veth.index).await.unwrap(), Some(a6));
        assert_eq!(nl.first_ipv6_global(lo.index).await.unwrap(), None);
        assert_eq!(
            nl.route_get(IpAddr::V6(b6)).await.unwrap(),
            (veth.index, IpAddr::V6(b6))
        );
        nl.kick_neighbour(veth.index, IpAddr::V6(b6)).await.unwrap();
        let mut mac = None;
        for _ in 0..100 {
            mac = nl.neighbour_mac(veth.index, IpAddr::V6(b6)).await.unwrap();
            if mac.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(mac, Some(peer_b.mac), "resolved over ND");
        let err = nl.route_get(IpAddr::V6(a6)).await.unwrap_err();
        assert!(err.to_string().contains("local address"), "{err:#}");
        assert!(matches!(
            nl.neighbour(veth.index, IpAddr::V6(b6)).await.unwrap(),
            Neighbour::Known { .. }
        ));
        nl.forget_neighbour(veth.index, IpAddr::V6(b6))
            .await
            .unwrap();
        assert_eq!(
            nl.neighbour(veth.index, IpAddr::V6(b6)).await.unwrap(),
            Neighbour::Unknown
        );

        // XDP program id.
        match crate::sys_bpf::load_xdp_returning(2, "nlt_pass") {
            Ok(prog) => {
                use std::os::fd::AsRawFd as _;
                nl.set_xdp(veth.index, Some(prog.as_raw_fd()), XDP_FLAGS_SKB_MODE, None)
                    .await
                    .unwrap();
                let id = nl.link_by_index(veth.index).await.unwrap().xdp_prog_id;
                eprintln!("xdp prog id: {id:?}");
                assert!(id.is_some());
                assert_eq!(nl.link_by_index(lo.index).await.unwrap().xdp_prog_id, None);
            }
            Err(e) => eprintln!("skipping the XDP check: BPF_PROG_LOAD failed: {e}"),
        }

        // Deleting one end removes both, in both namespaces.
        nl.delete_link(veth.index).await.unwrap();
        let err = nl.link_by_index(veth.index).await.unwrap_err();
        assert!(err.to_string().contains("not found"), "{err:#}");
        assert!(nl.link_by_name("nlt0").await.is_err());
        assert!(nl_b.link_by_name("nlt1").await.is_err());
        assert!(nl.delete_link(veth.index).await.is_err());
        assert_eq!(nl.links().await.unwrap().len(), 1);
    }
}
