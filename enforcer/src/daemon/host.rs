//! What the daemon needs from the host: root, a bpffs mount, the enforced interfaces' addresses.

use std::{
    ffi::CStr,
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

/// Whether this process runs as root (CAP_BPF and CAP_NET_ADMIN are needed; root has both).
#[must_use]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Mounts bpffs at `/sys/fs/bpf` when `pin_dir` lies under it and nothing is mounted there yet.
pub fn ensure_bpffs(pin_dir: &Path) -> std::io::Result<()> {
    let root = Path::new("/sys/fs/bpf");
    if !pin_dir.starts_with(root) || crate::datapath::is_bpffs(root) {
        return Ok(());
    }
    std::fs::create_dir_all(root)?;
    let (src, target, fstype) = (c"bpf", c"/sys/fs/bpf", c"bpf");
    // SAFETY: all pointers are valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Every address of the named interfaces, with its prefix length and interface: the addresses are
/// the policy's `router`, the prefixes the segments the enforcer guards.
pub fn interface_addresses(ifaces: &[String]) -> std::io::Result<Vec<(String, ipnet::IpNet)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy();
        if !ifaces.iter().any(|i| *i == name) {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr whose family says its real type;
        // the netmask, when present, has the same family.
        unsafe {
            if let Some(net) = sockaddr_net(ifa.ifa_addr, ifa.ifa_netmask) {
                out.push((name.clone().into_owned(), net));
            }
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    Ok(out)
}

/// The address and prefix of one `ifaddrs` entry; `None` for other families and IPv6 link-local
/// (judged as `router` by scope already).
///
/// # Safety
/// `addr` must point at a valid sockaddr; `mask` must be null or point at one of the same family.
unsafe fn sockaddr_net(
    addr: *const libc::sockaddr,
    mask: *const libc::sockaddr,
) -> Option<ipnet::IpNet> {
    // SAFETY: guaranteed by the caller.
    let family = i32::from(unsafe { (*addr).sa_family });
    if family == libc::AF_INET {
        // SAFETY: family AF_INET means sockaddr_in, for the mask too.
        let (a, m) = unsafe {
            let a = &*addr.cast::<libc::sockaddr_in>();
            let m = mask
                .cast::<libc::sockaddr_in>()
                .as_ref()
                .map_or(u32::MAX, |m| u32::from_be(m.sin_addr.s_addr));
            (Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)), m)
        };
        let len = u8::try_from(m.leading_ones()).unwrap_or(32);
        return ipnet::Ipv4Net::new(a, len).ok().map(ipnet::IpNet::V4);
    }
    if family == libc::AF_INET6 {
        // SAFETY: family AF_INET6 means sockaddr_in6, for the mask too.
        let (a, m) = unsafe {
            let a = &*addr.cast::<libc::sockaddr_in6>();
            let m = mask
                .cast::<libc::sockaddr_in6>()
                .as_ref()
                .map_or(u128::MAX, |m| u128::from_be_bytes(m.sin6_addr.s6_addr));
            (Ipv6Addr::from(a.sin6_addr.s6_addr), m)
        };
        if a.segments()[0] & 0xffc0 == 0xfe80 {
            return None;
        }
        let len = u8::try_from(m.leading_ones()).unwrap_or(128);
        return ipnet::Ipv6Net::new(a, len).ok().map(ipnet::IpNet::V6);
    }
    None
}

/// Interfaces that carry a default route (IPv4 or IPv6) in this network namespace: the uplinks.
/// What arrives there from their segment is routed traffic (the ISP's router, the internet), not
/// devices of a guarded segment.
#[must_use]
pub fn default_route_interfaces() -> Vec<String> {
    let mut out = Vec::new();
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ... (hex, host order).
    if let Ok(t) = std::fs::read_to_string("/proc/net/route") {
        for f in t
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
        {
            if f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" {
                out.push(f[0].to_owned());
            }
        }
    }
    // dest dest_len src src_len next_hop metric refcnt use flags iface (hex).
    if let Ok(t) = std::fs::read_to_string("/proc/net/ipv6_route") {
        const RTF_REJECT: u32 = 0x0200;
        for f in t.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()) {
            let reject = f
                .get(8)
                .and_then(|x| u32::from_str_radix(x, 16).ok())
                .is_some_and(|fl| fl & RTF_REJECT != 0);
            if f.len() > 9 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && !reject {
                out.push(f[9].to_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether an interface exists.
#[must_use]
pub fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid C string.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}
