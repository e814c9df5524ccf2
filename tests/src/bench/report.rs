//! Rendering (placeholder).
pub fn render(doc: &serde_json::Value) -> String {
    tables(doc)
}
pub fn tables(doc: &serde_json::Value) -> String {
    serde_json::to_string_pretty(doc).unwrap_or_default()
}
