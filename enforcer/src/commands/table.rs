//! Tables as the commands print them: a header row and aligned columns, no borders, like `ip` and
//! `kubectl` (comfy-table does the layout, so wide names never break the alignment).

use comfy_table::{CellAlignment, ContentArrangement, Table, presets::NOTHING};

/// A table with `header`; the columns whose header is in `numeric` are aligned right.
#[must_use]
pub fn new(header: &[&str], numeric: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for (i, h) in header.iter().enumerate() {
        if let Some(col) = t.column_mut(i) {
            // Flush left, two blanks between columns.
            col.set_padding((0, 2));
            if numeric.contains(h) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    t
}

/// The table as text, each line without trailing blanks.
#[must_use]
pub fn render(t: &Table) -> String {
    t.lines()
        .map(|l| l.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_numbers_go_right() {
        let mut t = new(&["NAME", "PACKETS"], &["PACKETS"]);
        t.add_row(vec!["a-very-long-device-name", "7"]);
        t.add_row(vec!["cam", "12345"]);
        let text = render(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        // Every line ends at the same column: the number column is right-aligned.
        let width = lines[2].len();
        assert!(lines.iter().all(|l| l.len() == width), "{text}");
        assert!(lines[1].ends_with(" 7"), "{text}");
        assert!(lines[1].starts_with("a-very-long-device-name  "), "{text}");
        assert!(lines[2].starts_with("cam "), "{text}");
    }
}
