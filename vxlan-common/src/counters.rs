//! Datapath counters: a per-CPU array (`COUNTERS`) indexed by [`Counter`].
//! Userspace sums the per-CPU values.

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, )+) => {
        /// Index into the `COUNTERS` per-CPU array.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter {
            $( $(#[doc = $doc])* $variant, )+
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[ $( Counter::$variant, )+ ];

            /// Stable snake_case name used by `vxlan-fwd stats`.
            pub const fn name(self) -> &'static str {
                match self { $( Counter::$variant => $name, )+ }
            }
        }
    };
}

counters! {
    /// Uplink: VXLAN frames decapsulated and handed to delivery.
    RxDecap = "rx_decap",
    /// Uplink: frames that are not VXLAN for us, passed to the kernel.
    RxPass = "rx_pass",
    /// Uplink: decapsulated frames delivered to one local port.
    RxDeliver = "rx_deliver",
    /// Uplink: copies of decapsulated frames flooded to local ports.
    RxFloodCopy = "rx_flood_copy",
    /// Uplink drop: outer IPv4 header malformed (IHL below 5).
    DropIpMalformed = "drop_ip_malformed",
    /// Uplink drop: outer IPv4 header with options (no VTEP sends them; the
    /// kernel's vxlan would accept them, we drop them).
    DropIpOptions = "drop_ip_options",
    /// Uplink drop: outer IPv4 header checksum wrong.
    DropIpChecksum = "drop_ip_checksum",
    /// Uplink drop: outer IPv4 total length beyond the frame, or too short.
    DropIpLength = "drop_ip_length",
    /// Uplink drop: outer TTL 0.
    DropIpTtl = "drop_ip_ttl",
    /// Uplink drop: outer UDP length inconsistent with the IPv4 length.
    DropUdpLength = "drop_udp_length",
    /// Uplink drop: VXLAN from a sender that is not an allowed remote of the
    /// VNI (anti-spoofing).
    DropSpoofed = "drop_spoofed",
    /// Uplink drop: VXLAN header truncated.
    DropVxlanTruncated = "drop_vxlan_truncated",
    /// Uplink drop: VXLAN I flag clear.
    DropVxlanFlags = "drop_vxlan_flags",
    /// Uplink drop: VNI not configured here.
    DropUnknownVni = "drop_unknown_vni",
    /// Uplink drop: inner frame shorter than an Ethernet header.
    DropInnerTruncated = "drop_inner_truncated",
    /// Uplink drop: the inner destination lives behind a remote VTEP (hairpin).
    DropRxHairpin = "drop_rx_hairpin",
    /// Uplink drop: the frame could not be decapsulated (helper failure).
    DropDecapFailed = "drop_decap_failed",
    /// Uplink drop: decapsulated frame with no local port to go to.
    DropNoLocalPort = "drop_no_local_port",
    /// Port: frames encapsulated to a known remote VTEP.
    TxEncap = "tx_encap",
    /// Port: encapsulated copies sent to default remotes by a flood.
    TxFloodCopy = "tx_flood_copy",
    /// Port: copies flooded to other local ports.
    TxLocalFloodCopy = "tx_local_flood_copy",
    /// Port: frames switched to another local port.
    LocalSwitch = "local_switch",
    /// Port: frames learned entries were written for (new, moved or refreshed).
    Learn = "learn",
    /// Port drop: frame shorter than an Ethernet header.
    DropTxTruncated = "drop_tx_truncated",
    /// Port drop: the destination is the port the frame came from.
    DropTxHairpin = "drop_tx_hairpin",
    /// Port drop: encapsulation failed (helper failure).
    DropEncapFailed = "drop_encap_failed",
    /// Port drop: the remote VTEP's link-layer address is not known yet and
    /// the frame is not IP unicast (those wait in the kernel's neighbour
    /// queue instead).
    DropNoNeigh = "drop_no_neigh",
    /// Port drop: the frame does not fit the uplink MTU once encapsulated.
    DropTooBig = "drop_too_big",
    /// Port: ICMP "fragmentation needed" sent back for a too-big IPv4 frame
    /// with DF (path MTU discovery).
    TxIcmpFragNeeded = "tx_icmp_frag_needed",
    /// Port drop: broadcast or unknown unicast with nowhere to go.
    DropNoFloodTarget = "drop_no_flood_target",
    /// Learning refused: the learning cap (`--max-fdb`) is reached.
    LearnRefused = "learn_refused",
    /// FDB events lost: the ring buffer was full (no `fdb watch` reader
    /// keeping up).
    EventsLost = "events_lost",
    /// Port: copies of floods sent to a multicast group.
    TxGroupCopy = "tx_group_copy",
    /// Uplink drop: VXLAN whose outer source address is our own local
    /// address, multicast, limited broadcast or 0.0.0.0 (a reflected or
    /// forged frame; the kernel's IP layer refuses these sources).
    DropBadOuterSrc = "drop_bad_outer_src",
    /// Uplink drop: VXLAN for our address and port sent to another host's
    /// MAC (PACKET_OTHERHOST: seen because the uplink is promiscuous).
    DropOtherHost = "drop_other_host",
    /// Uplink drop: non-zero outer UDP checksum that is wrong.
    DropUdpCsum = "drop_udp_csum",
    /// Uplink or port drop: inner source MAC multicast, broadcast or all
    /// zeros (a bridge refuses these sources).
    DropBadSrcMac = "drop_bad_src_mac",
    /// Uplink or port drop (with learning): the source MAC has a static
    /// FDB entry that points elsewhere (the kernel's `vxlan_snoop`).
    DropStaticConflict = "drop_static_conflict",
    /// Uplink drop: outer ECN CE over a Not-ECT inner packet (RFC 6040,
    /// the kernel's `INET_ECN_decapsulate`).
    DropEcn = "drop_ecn",
    /// Port drop: a frame with more than two VLAN tags (its tags could not
    /// all be moved into the inner frame).
    DropTxVlan = "drop_tx_vlan",
    /// Uplink: inner IPv4/IPv6 packets whose ECN field was updated from the
    /// outer header on decapsulation (CE, or ECT(1)).
    RxEcnMarked = "rx_ecn_marked",
    /// Port drop: broadcast, multicast or unknown unicast beyond the port's
    /// `bum_pps` (flood amplification limit).
    DropBumRate = "drop_bum_rate",
    /// Learning refused by a VNI's or a port's own cap (`max_fdb` of a
    /// `[[vni]]`, `port_max_fdb`); the instance-wide cap counts under
    /// `learn_refused`.
    LearnRefusedScope = "learn_refused_scope",
    /// Port: an ARP request for an address in the control plane's table,
    /// answered on the port itself instead of flooded (ARP suppression).
    ArpSuppressed = "arp_suppressed",
    /// Port: ICMPv6 "Packet Too Big" sent back for a too-big IPv6 frame
    /// (path MTU discovery of inner IPv6 senders).
    TxIcmp6TooBig = "tx_icmp6_too_big",
    /// Uplink (XDP): VXLAN frames whose outer UDP checksum XDP could not
    /// confirm, handed to TC to decapsulate (a checksum left for offload by
    /// a sender on the same host; TC verifies it when the kernel does not
    /// vouch for it, and drops it as `drop_udp_csum` if wrong).
    RxCsumDeferred = "rx_csum_deferred",
    /// Uplink drop: VXLAN over IPv6 with a zero UDP checksum (mandatory
    /// over IPv6; the kernel's vxlan drops these too, `udp6zerocsumrx` off).
    DropUdp6ZeroCsum = "drop_udp6_zero_csum",
    /// Uplink drop: VXLAN for a VNI over the other underlay family than the
    /// VNI's (an IPv4 VNI over IPv6, or the other way round).
    DropFamily = "drop_family",
    /// Port drop: a GSO super-packet for an IPv6 VTEP from a port that
    /// still offloads segmentation. Its outer UDP checksums could not be
    /// right (BPF cannot ask GSO for them); ports of IPv6 VNIs normally
    /// have segmentation turned off by the loader's guard.
    DropGso6 = "drop_gso_ipv6",
    /// Uplink: VXLAN frames over IPv6 decapsulated (also in `rx_decap`).
    RxDecap6 = "rx_decap_ipv6",
    /// Port: frames encapsulated over IPv6, unicast and flood copies
    /// (also in `tx_encap`, `tx_flood_copy`, `tx_group_copy`).
    TxEncap6 = "tx_encap_ipv6",
}

/// Number of counters: the size of the `COUNTERS` array.
pub const NUM_COUNTERS: u32 = Counter::ALL.len() as u32;
