//! Renders the JSON of a run as the terminal tables and as `BENCHMARKS.md`.

use std::fmt::Write as _;

use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
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
            "### veth path, {} devices (receiver NAPI thread CPU ns per packet received, {} rounds)\n",
            doc["veth"]["devices"], doc["veth"]["rounds"]
        );
        s.push_str("| scenario | min | median | p90 | Mpps per core | vs drop-all | received | forwarded |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in v {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2}x | {} | {} |",
                r["scenario"].as_str().unwrap_or(""),
                f(&r["receiver_ns_per_packet"]["min"]),
                f(&r["receiver_ns_per_packet"]["median"]),
                f(&r["receiver_ns_per_packet"]["p90"]),
                f(&r["mpps_per_core"]),
                f(&r["vs_drop_all"]),
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

fn ratio_of(doc: &Value, devices: u64, pattern: &str) -> Vec<(String, f64)> {
    doc["test_run"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["devices"].as_u64() == Some(devices) && r["pattern"] == pattern)
                .map(|r| {
                    (
                        r["class"].as_str().unwrap_or("").to_owned(),
                        f(&r["ratio_median"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The targets, each with the measured value and met / MISSED.
pub fn targets(doc: &Value) -> String {
    let mut s = String::from("### Targets\n\n| target | measured | verdict |\n|---|---|---|\n");
    for n in [10u64, 1_000, 100_000] {
        let r = ratio_of(doc, n, "hot");
        if r.is_empty() {
            continue;
        }
        let worst = r
            .iter()
            .cloned()
            .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
        let over: Vec<String> = r
            .iter()
            .filter(|x| x.1 > 5.0)
            .map(|x| format!("{} {:.1}x", x.0, x.1))
            .collect();
        let _ = writeln!(
            s,
            "| hot path <= 5x empty, {n} devices | worst {} {:.1}x{} | {} |",
            worst.0,
            worst.1,
            if over.is_empty() {
                String::new()
            } else {
                format!("; over: {}", over.join(", "))
            },
            verdict(over.is_empty())
        );
    }
    let r = ratio_of(doc, 100_000, "spread");
    if !r.is_empty() {
        let over: Vec<String> = r
            .iter()
            .filter(|x| x.1 > 15.0)
            .map(|x| format!("{} {:.1}x", x.0, x.1))
            .collect();
        let all: Vec<String> = r.iter().map(|x| format!("{} {:.1}x", x.0, x.1)).collect();
        let _ = writeln!(
            s,
            "| spread over 100,000 devices <= 15x empty | {} | {} |",
            all.join(", "),
            verdict(over.is_empty())
        );
    }
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
        let med = |name: &str| {
            v.iter()
                .find(|r| r["scenario"] == name)
                .map_or(f64::NAN, |r| f(&r["receiver_ns_per_packet"]["median"]))
        };
        let drop = med("xdp_drop_all");
        let _ = writeln!(
            s,
            "| (context) enforcer's own cost on the pass path: enforcer_allowed - no_program_allowed | {:.0} ns ({:.1}x drop-all); the rest is the kernel's forwarding, which any XDP program that passes pays | - |",
            med("enforcer_allowed") - med("no_program_allowed"),
            (med("enforcer_allowed") - med("no_program_allowed")) / drop
        );
        for (e, n) in [
            ("enforcer_denied", "nftables_denied"),
            ("enforcer_allowed", "nftables_allowed"),
        ] {
            let x = med(e) / drop;
            let _ = writeln!(
                s,
                "| veth: {e} <= 3x drop-all ({} devices) | {:.0} ns vs {:.0} ns = {:.1}x | {} |",
                doc["veth"]["devices"],
                med(e),
                drop,
                x,
                verdict(x <= 3.0)
            );
            let pps = med(n) / med(e);
            let _ = writeln!(
                s,
                "| veth: {e} >= 2x packets/s of {n} | {:.2} vs {:.2} Mpps per core = {:.1}x | {} |",
                1e3 / med(e),
                1e3 / med(n),
                pps,
                verdict(pps >= 2.0)
            );
        }
    }
    if let Some(cp) = doc["control_plane"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["devices"] == 100_000))
    {
        let t = f(&cp["compile_and_apply_ms"]);
        let _ = writeln!(
            s,
            "| 100,000 devices: parse + compile + apply < 1 s | {:.0} ms (parse {:.0}, compile {:.0}, apply {:.0}) | {} |",
            t,
            f(&cp["parse_ms"]),
            f(&cp["compile_ms"]),
            f(&cp["apply_first_ms"]),
            verdict(t < 1_000.0)
        );
        let _ = writeln!(
            s,
            "| memory proportional to devices, stated per device | {:.0} bytes/device (one slot; both slots {:.0}) | stated |",
            f(&cp["bytes_per_device"]),
            f(&cp["policy_map_bytes_both_slots"]) / 100_000.0
        );
    }
    s.push('\n');
    s
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
