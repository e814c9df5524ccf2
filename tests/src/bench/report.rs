//! Renders the JSON of a run as the terminal tables and as `BENCHMARKS.md`.

use std::fmt::Write as _;

use serde_json::Value;

use super::stats;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// The numbers of a JSON array (none when `v` is no array).
fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().map(f).collect())
        .unwrap_or_default()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**MISSED**" }
}

/// The tables (also printed by `cargo xtask bench`).
pub fn tables(doc: &Value) -> String {
    let mut s = String::new();
    let empty = Vec::new();
    let rows = doc["test_run"].as_array().unwrap_or(&empty);
    if !rows.is_empty() {
        s.push_str("### Per-packet cost, BPF_PROG_TEST_RUN (kernel-timed ns/packet; ratio = median of paired per-round ratios to the empty program)\n\n");
        s.push_str("| devices | class | pattern | pairs | enforcer min | median | p90 | empty median | driver->pass median | ratio |\n");
        s.push_str("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in rows {
            let drv = r["driver_to_pass_ns"]["median"]
                .as_f64()
                .map_or("-".to_owned(), |x| format!("{x:.0}"));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.2}x |",
                r["devices"],
                r["class"].as_str().unwrap_or(""),
                r["pattern"].as_str().unwrap_or(""),
                r["pairs"],
                f(&r["enforcer_ns"]["min"]),
                f(&r["enforcer_ns"]["median"]),
                f(&r["enforcer_ns"]["p90"]),
                f(&r["empty_ns"]["median"]),
                drv,
                f(&r["ratio_median"]),
            );
        }
        s.push('\n');
    }
    if let Some(rows) = doc["egress"].as_array().filter(|r| !r.is_empty()) {
        s.push_str("### Egress program, BPF_PROG_TEST_RUN (kernel-timed ns/packet; ratio = median of paired per-round ratios to the empty TC program; target for forwarded: <= 2x)\n\n");
        s.push_str("| class | egress min | median | p90 | empty TC median | ratio |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|\n");
        for r in rows {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}x |",
                r["class"].as_str().unwrap_or(""),
                f(&r["egress_ns"]["min"]),
                f(&r["egress_ns"]["median"]),
                f(&r["egress_ns"]["p90"]),
                f(&r["empty_ns"]["median"]),
                f(&r["ratio_median"]),
            );
        }
        s.push('\n');
    }
    if let Some(v) = doc["veth"]["scenarios"].as_array() {
        let _ = writeln!(
            s,
            "### veth path, {} devices (receiver NAPI thread CPU ns per packet received, {} rounds; vs drop-all = median of per-round ratios)\n",
            doc["veth"]["devices"], doc["veth"]["rounds"]
        );
        s.push_str("| scenario | min | median | p90 | Mpps per core | vs drop-all | program ns/run (kernel-timed) | received | forwarded |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in v {
            let run = &r["program_ns_per_run"]["median"];
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2}x | {} | {} | {} |",
                r["scenario"].as_str().unwrap_or(""),
                f(&r["receiver_ns_per_packet"]["min"]),
                f(&r["receiver_ns_per_packet"]["median"]),
                f(&r["receiver_ns_per_packet"]["p90"]),
                f(&r["mpps_per_core"]),
                f(&r["vs_drop_all"]),
                if run.is_null() {
                    "-".to_owned()
                } else {
                    format!("{:.0}", f(run))
                },
                r["packets_received"],
                r["packets_forwarded"],
            );
        }
        s.push('\n');
    } else if !doc["veth"].is_null() {
        let _ = writeln!(s, "### veth path\n\nnot measured: {}\n", doc["veth"]);
    }
    let cp = doc["control_plane"].as_array().unwrap_or(&empty);
    if !cp.is_empty() {
        s.push_str("### Control plane (wall clock, ms; memory = kernel `memlock` of the policy maps, one slot)\n\n");
        s.push_str("| devices | rules | parse | compile | apply (first) | apply (reload) | parse+compile+apply | entries | map bytes | bytes/device | reload under traffic, command to enforced | nft -f (equivalent) |\n");
        s.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
        let nft = doc["nft_load"].as_array().cloned().unwrap_or_default();
        for r in cp {
            let n = &r["devices"];
            let nft_ms = nft
                .iter()
                .find(|x| &x["devices"] == n)
                .and_then(|x| x["load_ms"]["median"].as_f64())
                .map_or("-".to_owned(), |x| format!("{x:.1}"));
            let lat: Vec<String> = r["reload_under_traffic"]["command_to_enforced_ms"]
                .as_array()
                .map(|a| a.iter().map(|x| format!("{:.1}", f(x))).collect())
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.0} | {} | {} |",
                n,
                r["rules"],
                f(&r["parse_ms"]),
                f(&r["compile_ms"]),
                f(&r["apply_first_ms"]),
                f(&r["apply_reload_ms"]),
                f(&r["compile_and_apply_ms"]),
                r["entries"],
                r["policy_map_bytes"],
                f(&r["bytes_per_device"]),
                lat.join(", "),
                nft_ms,
            );
        }
        s.push('\n');
    }
    s.push_str(&targets(doc));
    s
}

/// The per-packet targets (the per-packet cost issue): class names, hot and spread (100,000
/// devices) ratio caps to the empty program.
const PER_PACKET: [(&str, &[&str], f64, f64); 4] = [
    ("allowed reply", &["ipv4_allowed_reply"], 4.0, 10.0),
    ("denied", &["ipv4_denied"], 5.0, 12.0),
    (
        "new flow (IPv4, VLAN, IPv6 ext headers)",
        &[
            "ipv4_allowed_new_flow",
            "vlan_ipv4_new_flow",
            "ipv6_ext_headers_new_flow",
        ],
        15.0,
        30.0,
    ),
    ("later fragment", &["ipv4_later_fragment"], 5.0, 8.0),
];

/// The rows of `class` measured with `pattern` (hot: every policy size; spread: 100,000 devices).
fn rows_of<'a>(doc: &'a Value, class: &str, pattern: &str) -> Vec<&'a Value> {
    doc["test_run"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["class"] == class && r["pattern"] == pattern)
                .filter(|r| pattern == "hot" || r["devices"] == 100_000)
                .collect()
        })
        .unwrap_or_default()
}

/// One row per per-packet target: the worst ratio measured (and where), met / MISSED.
fn per_packet_targets(doc: &Value, s: &mut String) {
    for (what, classes, hot, spread) in PER_PACKET {
        for (pattern, cap) in [("hot", hot), ("spread", spread)] {
            let rows: Vec<&Value> = classes
                .iter()
                .flat_map(|c| rows_of(doc, c, pattern))
                .collect();
            let Some(worst) = rows
                .iter()
                .max_by(|a, b| f(&a["ratio_median"]).total_cmp(&f(&b["ratio_median"])))
            else {
                continue;
            };
            let ratio = f(&worst["ratio_median"]);
            let place = if pattern == "hot" {
                format!("{} devices", worst["devices"])
            } else {
                "spread over 100,000 devices".to_owned()
            };
            let _ = writeln!(
                s,
                "| {what}, {pattern}: <= {cap}x empty | worst {ratio:.2}x ({}, {place}: {:.0} ns, empty {:.0} ns) | {} |",
                worst["class"].as_str().unwrap_or(""),
                f(&worst["enforcer_ns"]["median"]),
                f(&worst["empty_ns"]["median"]),
                verdict(ratio <= cap)
            );
        }
    }
    // The floors: what the class cannot do without, measured beside it.
    let floors = [
        (
            "ipv4_allowed_reply",
            "an allowed reply",
            "the frame's flow lookup alone (`bench_floor`)",
        ),
        (
            "ipv4_allowed_new_flow",
            "a new flow",
            "the frame's flow looked up and inserted (`bench_floor_new`)",
        ),
        (
            "ipv4_denied",
            "a denied packet",
            "the flow lookup missing, both ends' identities and the class pair (`bench_floor_denied`)",
        ),
        (
            "ipv4_later_fragment",
            "a later fragment",
            "the fragment's `FRAGS` lookup alone (`bench_floor_fragment`)",
        ),
    ];
    for (class, of, how) in floors {
        for pattern in ["hot", "spread"] {
            floor_row(doc, class, pattern, &format!("{of}, {pattern}: {how}"), s);
        }
    }
}

/// The context row of `class`'s floor measured with `pattern`, if it was.
fn floor_row(doc: &Value, class: &str, pattern: &str, what: &str, s: &mut String) {
    let rows = rows_of(doc, class, pattern);
    let Some(r) = rows
        .iter()
        .filter(|r| r["floor_ns"].is_object())
        .max_by(|a, b| f(&a["floor_ratio_median"]).total_cmp(&f(&b["floor_ratio_median"])))
    else {
        return;
    };
    let _ = writeln!(
        s,
        "| (context) floor of {what}, {} devices | {:.0} ns = {:.1}x empty; the enforcer {:.0} ns = {:.1}x | - |",
        r["devices"],
        f(&r["floor_ns"]["median"]),
        f(&r["floor_ratio_median"]),
        f(&r["enforcer_ns"]["median"]),
        f(&r["ratio_median"]),
    );
}

/// The targets, each with the measured value and met / MISSED.
pub fn targets(doc: &Value) -> String {
    let mut s = String::from("### Targets\n\n| target | measured | verdict |\n|---|---|---|\n");
    per_packet_targets(doc, &mut s);
    if let Some(r) = doc["egress"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["class"] == "forwarded"))
    {
        let ratio = f(&r["ratio_median"]);
        let _ = writeln!(
            s,
            "| egress program, forwarded packet <= 2x empty TC program | {ratio:.2}x | {} |",
            verdict(ratio <= 2.0)
        );
    }
    if let Some(v) = doc["veth"]["scenarios"].as_array() {
        veth_targets(doc, v, &mut s);
    }
    if let Some(cp) = doc["control_plane"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["devices"] == 100_000))
    {
        control_targets(cp, &mut s);
    }
    s.push('\n');
    s
}

fn veth_targets(doc: &Value, v: &[Value], s: &mut String) {
    let samples = |name: &str| -> Vec<f64> {
        v.iter()
            .find(|r| r["scenario"] == name)
            .map(|r| numbers(&r["receiver_ns_per_packet"]["samples"]))
            .unwrap_or_default()
    };
    let med = |name: &str| stats::median(&samples(name));
    // Each round measures every scenario in turn: a ratio of two scenarios is the median of the
    // rounds' own ratios, as the test runs' are (a run without per-round samples: of the medians).
    let ratio = |a: &str, b: &str| {
        let r = stats::paired_ratio(&samples(a), &samples(b));
        if r.is_nan() { med(a) / med(b) } else { r }
    };
    let drop = med("xdp_drop_all");
    let x = ratio("enforcer_denied", "xdp_drop_all");
    let _ = writeln!(
        s,
        "| veth: enforcer_denied <= 3x drop-all ({} devices) | {x:.2}x (medians {:.0} ns vs {:.0} ns) | {} |",
        doc["veth"]["devices"],
        med("enforcer_denied"),
        drop,
        verdict(x <= 3.0)
    );
    // Runs of before the floors were measured have no such scenario (NaN): no row.
    let floor = med("floor_denied");
    if !floor.is_nan() {
        let _ = writeln!(
            s,
            "| (context) veth: floor of a denied packet, the flow lookup missing, both ends' identities and the class pair (`bench_floor_denied`) | {:.1}x (medians {floor:.0} ns vs {drop:.0} ns) | - |",
            ratio("floor_denied", "xdp_drop_all"),
        );
    }
    let forwarding = med("no_program_allowed");
    let share = ratio("enforcer_allowed", "no_program_allowed") - 1.0;
    let _ = writeln!(
        s,
        "| veth: the enforcer's own cost on the allowed path (enforcer_allowed - no_program_allowed) <= 10% of the kernel's forwarding (no_program_allowed) | {:.0}% (medians {:.0} ns and {forwarding:.0} ns) | {} |",
        share * 100.0,
        med("enforcer_allowed"),
        verdict(share <= 0.10)
    );
    for (name, what) in [
        (
            "xdp_pass_all_allowed",
            "any XDP program that passes (`bench_pass`)",
        ),
        (
            "floor_allowed",
            "floor of an allowed packet, the flow lookup alone (`bench_floor`)",
        ),
    ] {
        let m = med(name);
        if m.is_nan() {
            continue;
        }
        let _ = writeln!(
            s,
            "| (context) veth: {what}, own cost ({name} - no_program_allowed) | {:.0}% (medians {m:.0} ns and {forwarding:.0} ns) | - |",
            (ratio(name, "no_program_allowed") - 1.0) * 100.0,
        );
    }
    // The programs alone, as the kernel timed each of their runs on this path: what the enforcer
    // itself adds, and what its floor does, without the path's noise around them.
    for r in v {
        let run = numbers(&r["program_ns_per_run"]["samples"]);
        if run.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "| (context) veth: {}, the program's own run time as the kernel times it (`bpf_stats`) | {:.0} ns a packet = {:.0}% of no_program_allowed | - |",
            r["scenario"].as_str().unwrap_or(""),
            stats::median(&run),
            stats::paired_ratio(&run, &samples("no_program_allowed")) * 100.0,
        );
    }
    for (e, n) in [
        ("enforcer_denied", "nftables_denied"),
        ("enforcer_allowed", "nftables_allowed"),
    ] {
        let pps = ratio(n, e);
        let _ = writeln!(
            s,
            "| veth: {e} >= 2x packets/s of {n} | {pps:.1}x (medians {:.2} vs {:.2} Mpps per core) | {} |",
            1e3 / med(e),
            1e3 / med(n),
            verdict(pps >= 2.0)
        );
    }
}

fn control_targets(cp: &Value, s: &mut String) {
    let t = f(&cp["compile_and_apply_ms"]);
    // Older reports measured one cold start.
    let starts: Vec<String> = cp["cold_starts_ms"]
        .as_array()
        .map(|a| a.iter().map(|v| format!("{:.0}", f(v))).collect())
        .unwrap_or_default();
    let of = if starts.len() > 1 {
        format!(
            ", the median of {} cold starts: {} ms",
            starts.len(),
            starts.join(", ")
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "| 100,000 devices / 10,000 rules: parse + compile + apply <= 1 s | {t:.0} ms (parse {:.0}, compile {:.0}, apply {:.0}{of}) | {} |",
        f(&cp["parse_ms"]),
        f(&cp["compile_ms"]),
        f(&cp["apply_first_ms"]),
        verdict(t <= 1_000.0)
    );
    let mut lat = numbers(&cp["reload_under_traffic"]["command_to_enforced_ms"]);
    lat.sort_by(f64::total_cmp);
    if let Some(median) = lat.get(lat.len() / 2) {
        let _ = writeln!(
            s,
            "| 100,000 devices: reload under traffic, command to enforced, <= 0.7 s | median {median:.0} ms of {} reloads | {} |",
            lat.len(),
            verdict(*median <= 700.0)
        );
    }
    let per_device = f(&cp["bytes_per_device"]);
    let _ = writeln!(
        s,
        "| policy maps <= 300 B per device (one slot; both slots, as kept between applies, {:.0}) | {per_device:.0} B | {} |",
        f(&cp["policy_map_bytes_both_slots"]) / 100_000.0,
        verdict(per_device <= 300.0)
    );
}

const METHOD: &str = include_str!("method.md");

/// The whole `BENCHMARKS.md`.
pub fn render(doc: &Value) -> String {
    let mut s = String::from("# Benchmarks\n\n");
    let _ = writeln!(
        s,
        "Generated by `cargo xtask bench{}` (needs root). Machine: {} ({} CPUs), kernel {}, {}; load average at start {}. \
         Wall time of the run: {} s.\n\n\
         This VM has 2 cores shared with other engineers' builds and tests: expect noise; \
         the ratios are paired per round, which removes most of it.\n",
        if doc["quick"] == true { " --quick" } else { "" },
        doc["machine"]["cpu"].as_str().unwrap_or("?"),
        doc["machine"]["cpus"],
        doc["machine"]["kernel"].as_str().unwrap_or("?"),
        doc["machine"]["nft"].as_str().unwrap_or("nft ?"),
        doc["machine"]["loadavg_at_start"].as_str().unwrap_or("?"),
        doc["wall_s"],
    );
    s.push_str("## Results\n\n");
    s.push_str(&tables(doc));
    s.push_str(&crate::loader::table(doc));
    s.push_str(METHOD);
    s
}
