//! Helpers shared by the compiler's unit tests.

use enforcer_common::{Decision, rules::PairValue};

use crate::policy::{
    CompileOptions, CompiledPolicy, compile,
    maps::{ClassPair, PairPort},
    parse_str,
};

pub const ZONES: &str = "zones: {a: {}, b: {}, quarantine: {}}\n";

pub fn compile_yaml(yaml: &str, opts: &CompileOptions) -> CompiledPolicy {
    let policy = parse_str("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    compile(&policy, opts).unwrap_or_else(|e| panic!("{e}"))
}

/// Rules `r1` and `r2` (ids 1 and 2), both from zone `a` to zone `b`.
pub fn two_rules(first: &str, second: &str) -> CompiledPolicy {
    let yaml = format!(
        "{ZONES}devices: {{da: {{zone: a, addresses: [10.0.0.1]}}, db: {{zone: b, addresses: [10.0.0.2]}}}}\nrules:\n  - {{name: r1, from: zone:a, to: zone:b, {first}}}\n  - {{name: r2, from: zone:a, to: zone:b, {second}}}\n"
    );
    compile_yaml(&yaml, &CompileOptions::default())
}

pub fn class(c: &CompiledPolicy, name: &str) -> u16 {
    c.classes
        .iter()
        .find(|k| k.name == name)
        .map_or_else(|| panic!("no class {name}"), |k| k.id)
}

pub fn pair(c: &CompiledPolicy, src: &str, dst: &str) -> PairValue {
    let key = ClassPair {
        src: class(c, src),
        dst: class(c, dst),
    };
    c.maps
        .pairs
        .iter()
        .find(|p| p.0 == key)
        .map_or_else(|| panic!("no pair {src} -> {dst}"), |p| p.1)
}

pub fn port(c: &CompiledPolicy, p: &PairValue, proto: u8, port: u16) -> Option<Decision> {
    let key = PairPort {
        pair: p.pair,
        proto,
        port,
    };
    c.maps.ports.iter().find(|e| e.0 == key).map(|e| e.1)
}
