//! The egress program (TC, attached through tcx beside the XDP program on every enforced
//! interface): judges the packets the router itself sends, with `router` as the source, through
//! the same maps as the XDP program, and remembers what it allows so the replies are flow hits at
//! ingress.
//!
//! Forwarded packets were judged at ingress already and leave untouched. They are told apart by
//! the socket buffer's ingress interface: the kernel records where a received packet came in
//! (`skb_iif`) and keeps it through forwarding, also through NAT, while a packet the router makes
//! (its own connections, its replies, its ICMP errors) starts with none. One load and a compare is
//! all a forwarded packet costs. Neither the source address (a masquerading uplink gives forwarded
//! packets the router's) nor the socket (test runs attach a dummy one to every packet) would do.
//!
//! Always passed, whatever the policy: ARP, neighbour discovery, router advertisements and
//! redirects (the router is the one router here), MLD, non-IP frames, DHCP and DHCPv6 server
//! replies, link-local multicast, replies on flows judged at ingress, and ICMP errors related to a
//! remembered flow (errors about forwarded packets included: PMTU discovery needs them).

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use enforcer_common::{Mode, ROUTER_DEVICE, Verdict, event::DenyReason, stats::Counter};
use enforcer_ebpf::scope::{is_dhcp_server_reply, is_link_local_multicast_dest};

use crate::{
    account, flow,
    maps::{CONFIG, CONTROL},
    parse::{self, Fragment, L4, Packet, Quoted, Reject},
    policy::judge_router,
};

/// `TCX_NEXT`: not ours to stop; the next program on the interface (or the stack) decides.
const PASS: i32 = TC_ACT_UNSPEC;
const DROP: i32 = TC_ACT_SHOT;

/// Bytes pulled into the linear part of a socket buffer when headers are not all there: Ethernet,
/// IPv6 with a few extension headers, ICMP, and the IP header and ports an ICMP error quotes.
const HEADER_BYTES: u32 = 192;

/// Per-CPU working memory of the egress program (its own: `Scratch` belongs to the XDP program).
pub struct EgressScratch {
    pkt: Packet,
    /// The router's packet as a new flow, and a remembered flow judged again.
    rejudge: flow::Rejudge,
    quoted: Quoted,
}

/// See [`EgressScratch`]. TC egress runs with bottom halves disabled, so nothing else runs on
/// this CPU's slot meanwhile.
#[map]
static EGRESS_SCRATCH: PerCpuArray<EgressScratch> = PerCpuArray::with_max_entries(1, 0);

#[classifier]
pub fn enforcer_egress(ctx: TcContext) -> i32 {
    // SAFETY: the context pointer is valid for the whole run; `ingress_ifindex` is readable by
    // every TC program.
    if unsafe { (*ctx.skb.skb).ingress_ifindex } != 0 {
        return PASS;
    }
    own(&ctx)
}

/// A packet the router itself sends.
#[inline(always)]
fn own(ctx: &TcContext) -> i32 {
    let Some(scratch) = EGRESS_SCRATCH.get_ptr_mut(0) else {
        return DROP;
    };
    // SAFETY: this CPU's slot of a per-CPU map (see `EGRESS_SCRATCH`).
    let scratch = unsafe { &mut *scratch };
    match parse_headers(ctx, &mut scratch.pkt) {
        Ok(()) => {}
        // The router's own link traffic: address resolution, neighbour discovery, its router
        // advertisements, MLD, and whatever non-IP protocol it speaks on the link.
        Err(Reject::Arp | Reject::NeighbourDiscovery | Reject::RogueRouter | Reject::NonIp) => {
            return PASS;
        }
        Err(Reject::Malformed(counter)) => {
            account::count(counter);
            return DROP;
        }
    }
    let pkt = &mut scratch.pkt;
    // The router is identified by the program that sees its packet, never by a MAC: flows it
    // starts bind no MAC on its side, whichever interface a packet of them leaves by.
    pkt.src_mac = [0; 6];
    if is_link_local_multicast_dest(pkt.family, &pkt.dst)
        || (pkt.l4 == L4::Ports
            && is_dhcp_server_reply(pkt.family, pkt.proto, pkt.sport, pkt.dport))
    {
        return PASS;
    }
    enforce(ctx, scratch)
}

/// Parses the frame; when its headers are not all in the linear part of the socket buffer (the
/// kernel's own TCP keeps payload in pages), pulls them in and parses once more.
#[inline(always)]
fn parse_headers(ctx: &TcContext, pkt: &mut Packet) -> Result<(), Reject> {
    let first = parse::parse(ctx, pkt);
    if matches!(first, Err(Reject::Malformed(Counter::MalformedTruncated))) && pull(ctx) {
        return parse::parse(ctx, pkt);
    }
    first
}

/// Makes up to [`HEADER_BYTES`] of the frame directly readable; whether that changed anything.
#[inline(always)]
fn pull(ctx: &TcContext) -> bool {
    let linear = (ctx.data_end() - ctx.data()) as u32;
    let want = ctx.len().min(HEADER_BYTES);
    linear < want && ctx.pull_data(want).is_ok()
}

#[inline(always)]
fn passed(rule: u32, pkt: &Packet, now: u64) -> i32 {
    account::device(ROUTER_DEVICE, Verdict::Allow, pkt.len, false, now);
    account::rule(rule, pkt.len);
    PASS
}

/// The verdict on the router's own IP packet: as `enforce` in `main.rs` judges a device's, with
/// `router` as the source.
#[inline(always)]
fn enforce(ctx: &TcContext, scratch: &mut EgressScratch) -> i32 {
    let EgressScratch {
        pkt,
        rejudge,
        quoted,
    } = scratch;
    let pkt = &*pkt;
    let Some(control) = CONTROL.get(0) else {
        account::count(Counter::NoPolicy);
        return DROP;
    };
    let epoch = crate::live_epoch(control);
    let slot = enforcer_common::control::slot_of(epoch);
    let Some(cfg) = CONFIG.get(u32::from(slot)) else {
        account::count(Counter::NoPolicy);
        return DROP;
    };
    if cfg.generation == 0 {
        account::count(Counter::NoPolicy);
        return DROP;
    }
    let now = crate::now_ns();

    if pkt.frag == Fragment::Later {
        return match flow::later_fragment(pkt, cfg, slot, now) {
            Some(hit) => {
                account::count(Counter::FragmentPassed);
                passed(hit.rule, pkt, now)
            }
            None => {
                account::count(Counter::FragmentOrphan);
                DROP
            }
        };
    }
    // An ICMP error the router sends about a packet of a remembered flow: a forwarded one (time
    // exceeded, fragmentation needed) or one sent to the router (port unreachable).
    if pkt.l4 == L4::Error
        && (parse::parse_quoted(ctx, pkt, quoted)
            || (pull(ctx) && parse::parse_quoted(ctx, pkt, quoted)))
        && let Some(hit) = flow::related(quoted, pkt, cfg, slot, now)
    {
        account::count(Counter::IcmpRelated);
        return passed(hit.rule, pkt, now);
    }
    // Replies on flows judged at ingress (DNS answers, an SSH session to the router), and the
    // router's own flows.
    if flow::is_stateful(pkt.l4)
        && let Some(hit) = flow::lookup(pkt, cfg, &flow::Clock { epoch, now }, rejudge)
    {
        account::count(Counter::FlowHit);
        if pkt.frag == Fragment::First {
            flow::remember_fragment(pkt, ROUTER_DEVICE, hit.rule, now);
        }
        return passed(hit.rule, pkt, now);
    }

    let t = &mut rejudge.tuple;
    t.family = pkt.family;
    t.proto = pkt.proto;
    t.l4 = pkt.l4;
    t.again = 0;
    t.src = pkt.src;
    t.dst = pkt.dst;
    t.dport = pkt.dport;
    t.src_mac = pkt.src_mac;
    let j = judge_router(slot, cfg, now, t);
    if j.allow {
        // The router's flows hold a quota of their own (its row), like any device's: over it,
        // or with the table full, the packet is refused as at ingress.
        if let Some(refused) = flow::remember(pkt, &j, cfg, epoch, now).refusal() {
            account::count(refused);
            account::device(ROUTER_DEVICE, Verdict::Deny, pkt.len, false, now);
            return DROP;
        }
        if pkt.frag == Fragment::First {
            flow::remember_fragment(pkt, ROUTER_DEVICE, j.rule, now);
        }
        return passed(j.rule, pkt, now);
    }

    let audit = cfg.mode == Mode::Audit as u8;
    let verdict = if audit { Verdict::Audit } else { Verdict::Deny };
    account::device(ROUTER_DEVICE, verdict, pkt.len, false, now);
    if matches!(j.reason, DenyReason::Rule | DenyReason::Default) {
        account::rule(j.rule, pkt.len);
    }
    // SAFETY: as in `enforcer_egress`; `ifindex` is the interface the packet leaves by.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    account::deny_event(ifindex, pkt, &j, verdict, now);
    if audit { PASS } else { DROP }
}
