//! Part 2 (placeholder until the live-frame path is written).
pub fn run(_quick: bool) -> serde_json::Value {
    serde_json::json!({"skipped": "not implemented yet"})
}
