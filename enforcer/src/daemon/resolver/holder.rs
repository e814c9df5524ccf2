//! Who holds a port: for the start-up error when port 53 is taken (dnsmasq, systemd-resolved).

use std::fs;

/// Socket inodes listening on `port` (TCP) or bound to it (UDP), from `/proc/net`.
fn inodes(port: u16) -> Vec<String> {
    let hex = format!(":{port:04X}");
    let mut out = Vec::new();
    for table in ["udp", "udp6", "tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[1].ends_with(&hex) {
                out.push(cols[9].to_owned());
            }
        }
    }
    out
}

/// `NAME (pid N)` of a process holding `port`, when one can be found.
#[must_use]
pub fn holder(port: u16) -> Option<String> {
    let wanted: Vec<String> = inodes(port)
        .into_iter()
        .filter(|i| i != "0")
        .map(|i| format!("socket:[{i}]"))
        .collect();
    if wanted.is_empty() {
        return None;
    }
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some(format!("{} (pid {pid})", comm.trim()));
            }
        }
    }
    None
}
