use super::*;

pub(super) const ZONES: &str = "zones: {cameras: {}, office: {}, quarantine: {}}\n";
pub(super) const DEVICES: &str = "devices:\n  fishtank: {zone: office, addresses: [10.0.0.9]}\n  cam-1: {zone: cameras, addresses: [10.0.0.10]}\n";
pub(super) const RULES: &str =
    "rules:\n  - {name: r, from: device:fishtank, to: zone:cameras, allow: [tcp/554]}\n";

#[test]
fn a_file_that_fails_to_parse_is_the_only_error_reported() {
    let tabbed = DEVICES.replacen("  fishtank", "\tfishtank", 1);
    let sources = [
        Source::in_memory("00-zones.yaml", ZONES),
        Source::in_memory("10-devices.yaml", &tabbed),
        Source::in_memory("20-rules.yaml", RULES),
    ];
    let err = from_sources(&Arc::from("p"), &sources, None)
        .map(|_| ())
        .expect_err("a tab");
    let all = err.diagnostics();
    assert_eq!(all.len(), 1, "{err}");
    assert_eq!(
        all[0].to_string(),
        "10-devices.yaml:2:1: error: tab used for indentation"
    );
}

#[test]
fn a_definition_whose_body_fails_is_no_undefined_reference() {
    // An invalid zone name drops the device; the rule naming it must not add "undefined".
    let broken = DEVICES.replacen("zone: office,", "zone: Office,", 1);
    let sources = [
        Source::in_memory("00-zones.yaml", ZONES),
        Source::in_memory("10-devices.yaml", &broken),
        Source::in_memory("20-rules.yaml", RULES),
    ];
    let err = from_sources(&Arc::from("p"), &sources, None)
        .map(|_| ())
        .expect_err("bad zone name");
    let all = err.diagnostics();
    assert_eq!(all.len(), 1, "{err}");
    assert!(
        all[0].message.contains("invalid zone name `Office`"),
        "{err}"
    );
}

#[test]
fn the_same_policy_without_the_fault_loads() {
    let sources = [
        Source::in_memory("00-zones.yaml", ZONES),
        Source::in_memory("10-devices.yaml", DEVICES),
        Source::in_memory("20-rules.yaml", RULES),
    ];
    let policy = from_sources(&Arc::from("p"), &sources, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.devices.len(), 2);
}

/// A directory of its own under the system temp dir, removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "enforcer-load-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_fifo_as_the_policy_path_is_an_error_naming_it_and_does_not_block() {
    let dir = TempDir::new("fifo");
    let fifo = dir.0.join("policy.yaml");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap_or_else(|e| panic!("mkfifo: {e}"));
    // No writer ever opens it: a blocking open or read would hang this test.
    let err = load(&fifo).map(|_| ()).expect_err("a FIFO is no policy");
    assert!(
        matches!(err, PolicyError::NotRegular { kind: "a FIFO", .. }),
        "{err}"
    );
    let shown = err.to_string();
    assert!(shown.contains(&fifo.display().to_string()), "{shown}");
    assert!(shown.contains("not a regular file (a FIFO)"), "{shown}");
    assert_eq!(err.errors()[0].file, fifo.display().to_string());
}

#[test]
fn a_character_device_as_the_policy_path_is_an_error() {
    let err = load(Path::new("/dev/zero"))
        .map(|_| ())
        .expect_err("a device is no policy");
    assert!(
        err.to_string()
            .contains("/dev/zero: not a regular file (a character device)"),
        "{err}"
    );
}

#[test]
fn a_fifo_inside_a_policy_directory_is_skipped() {
    let dir = TempDir::new("fifo-in-dir");
    fs::write(dir.0.join("00-zones.yaml"), ZONES).unwrap_or_else(|e| panic!("{e}"));
    fs::write(dir.0.join("10-devices.yaml"), DEVICES).unwrap_or_else(|e| panic!("{e}"));
    nix::unistd::mkfifo(&dir.0.join("20-rules.yaml"), nix::sys::stat::Mode::S_IRUSR)
        .unwrap_or_else(|e| panic!("mkfifo: {e}"));
    let policy = load(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.devices.len(), 2);
    assert!(policy.rules.is_empty());
}

/// Parse a generated hostile input; it must be rejected.
fn rejected(text: &str) -> PolicyError {
    parse_str("hostile.yaml", text)
        .map(|_| ())
        .expect_err("hostile input must be rejected")
}

fn assert_bounded(err: &PolicyError) {
    let diags = err.diagnostics();
    assert!(diags.iter().filter(|d| d.is_error()).count() <= crate::policy::MAX_REPORTED);
    for d in &diags {
        assert!(
            d.message.chars().count() <= crate::policy::MAX_MESSAGE_CHARS + 3,
            "{d}"
        );
    }
    // Display (what a log or a terminal shows) stays small whatever the input.
    assert!(
        err.to_string().len() < 200_000,
        "{} bytes",
        err.to_string().len()
    );
    assert!(err.summary(20).lines().count() <= 21);
}

#[test]
fn an_alias_bomb_reports_a_hundred_errors_and_counts_the_rest() {
    // `x: &a [*a, *a, ...]`, 200,000 aliases on one line (the 6 MB attack file holds 1.5 M).
    let aliases = 200_000;
    let text = format!("x: &a [{}]\n", vec!["*a"; aliases].join(", "));
    let err = rejected(&text);
    assert_bounded(&err);
    let errors = err.errors();
    assert_eq!(errors.len(), crate::policy::MAX_REPORTED);
    // Every alias, the anchor and the unknown key `x` are each one problem.
    assert_eq!(
        err.omitted().errors,
        aliases + 2 - crate::policy::MAX_REPORTED
    );
    assert_eq!(errors[0].message, "unknown key `x` in the policy file");
    assert!(errors[1].message.contains("YAML anchors"), "{}", errors[1]);
    // Kept in place order: the first aliases of the line.
    assert!(errors[2].message.contains("YAML aliases"), "{}", errors[2]);
    assert_eq!((errors[2].line, errors[2].col), (1, 8));
    let summary = err.summary(20);
    assert!(
        summary.ends_with(&format!("and {} more errors", aliases + 2 - 19)),
        "{summary}"
    );
}

#[test]
fn an_alias_bomb_over_many_lines_renders_quickly_bounded() {
    let text = format!("x: &a [\n{}]\n", "  *a,\n".repeat(100_000));
    let dir = TempDir::new("bomb-lines");
    let file = dir.0.join("bomb.yaml");
    fs::write(&file, &text).unwrap_or_else(|e| panic!("{e}"));
    let err = load(&file).map(|_| ()).expect_err("aliases");
    assert_bounded(&err);
    let rendered = crate::policy::render_all(&err.diagnostics());
    assert_eq!(rendered.len(), crate::policy::MAX_REPORTED);
    assert!(rendered[5].contains("  *a,"), "{}", rendered[5]);
}

#[test]
fn deep_nesting_is_one_error() {
    let text = format!("zones: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let err = rejected(&text);
    assert_bounded(&err);
    assert_eq!(err.errors().len(), 1, "{err}");
    assert!(err.to_string().contains("nesting deeper than 16"), "{err}");
}

#[test]
fn a_huge_plain_key_is_a_syntax_error() {
    // YAML caps implicit keys at 1024 characters.
    let text = format!("{}: 1\n", "k".repeat(1 << 20));
    let err = rejected(&text);
    assert_bounded(&err);
    assert_eq!(err.errors().len(), 1, "{err}");
    assert!(err.errors()[0].message.starts_with("invalid YAML"), "{err}");
}

#[test]
fn a_huge_value_is_reported_with_a_bounded_message() {
    let text = format!(
        "{ZONES}devices:\n  cam-1: {{zone: cameras, addresses: [10.0.0.1], vendor: \"{}\"}}\n",
        "v".repeat(1 << 20)
    );
    let err = rejected(&text);
    assert_bounded(&err);
    assert_eq!(err.errors().len(), 1, "{err}");
    assert!(
        err.errors()[0].message.contains("value longer than 1024"),
        "{err}"
    );
}

#[test]
fn a_huge_device_name_is_reported_with_a_bounded_message() {
    // An explicit key (`? `) may be longer than 1024 characters.
    let text = format!(
        "{ZONES}devices:\n  ? {}\n  : {{zone: cameras, addresses: [10.0.0.1]}}\n",
        "d".repeat(1 << 20)
    );
    let err = rejected(&text);
    assert_bounded(&err);
    assert_eq!(err.errors().len(), 1, "{err}");
    assert!(
        err.errors()[0].message.contains("longer than 1024"),
        "{err}"
    );
}

#[test]
fn a_million_tiny_list_items_are_one_error() {
    // 1,000,000 items in a list where a mapping of zones belongs: one type error, no cascade.
    let text = format!("zones: [{}]\n", vec!["a"; 1_000_000].join(","));
    let err = rejected(&text);
    assert_bounded(&err);
    // The list, and (there being no zones) the default zone `quarantine` undefined.
    assert_eq!(err.errors().len(), 2, "{err}");
    assert!(err.errors()[1].message.contains("found a list"), "{err}");
}

#[test]
fn a_million_duplicate_keys_report_a_hundred_and_count_the_rest() {
    let text = format!("zones:\n{}", "  a: {}\n".repeat(300_000));
    let err = rejected(&text);
    assert_bounded(&err);
    let errors = err.errors();
    assert_eq!(errors.len(), crate::policy::MAX_REPORTED);
    assert_eq!(err.omitted().errors + errors.len(), 300_000 - 1);
    assert_eq!(
        errors[0].message,
        "duplicate key `a` (first defined at hostile.yaml:2:3)"
    );
    assert_eq!(errors[0].line, 3);
}

#[test]
fn a_long_line_of_unknown_keys_is_bounded() {
    // One 2 MB line of a flow mapping with 200,000 unknown keys.
    let keys: Vec<String> = (0..200_000).map(|i| format!("k{i}: 1")).collect();
    let text = format!("zones: {{cameras: {{{}}}}}\n", keys.join(", "));
    let dir = TempDir::new("long-line");
    let file = dir.0.join("long.yaml");
    fs::write(&file, &text).unwrap_or_else(|e| panic!("{e}"));
    let err = load(&file).map(|_| ()).expect_err("unknown keys");
    assert_bounded(&err);
    // Every key, and the default zone `quarantine` undefined.
    assert_eq!(err.errors().len() + err.omitted().errors, 200_001);
    let shown = crate::policy::render_all(&err.errors()[..1]).concat();
    assert!(shown.contains("k0: 1"), "{shown}");
    // The snippet shows a window of the line, not 2 MB of it.
    assert!(shown.len() < 2_000, "{} bytes", shown.len());
}

#[test]
fn files_read_in_parallel_give_what_reading_them_in_turn_gives() {
    // Thirteen files, three of them with errors, so each worker meets some.
    let mut sources = vec![
        Source::in_memory("00-zones.yaml", ZONES),
        Source::in_memory("01-devices.yaml", DEVICES),
        Source::in_memory("99-rules.yaml", RULES),
    ];
    for i in 0..10 {
        let text = match i {
            2 => "devices:\n  bad-2: {zone: office, addresses: [10.1.0.300]}\n".to_owned(),
            5 => {
                "devices:\n  bad-5: {zone: office, addresses: [10.1.0.5], colour: red}\n".to_owned()
            }
            7 => "devices: [\n".to_owned(),
            _ => format!("devices:\n  dev-{i}: {{zone: office, addresses: [10.1.0.{i}]}}\n"),
        };
        sources.insert(
            2 + i,
            Source::in_memory(&format!("{:02}-devices.yaml", 10 + i), &text),
        );
    }
    let parallel = read_files(&sources.iter().collect::<Vec<_>>());
    let in_turn: Vec<FileRead> = sources.iter().map(read_file).collect();
    assert_eq!(parallel.len(), sources.len());
    for (p, t) in parallel.iter().zip(&in_turn) {
        assert_eq!(
            (p.doc.is_some(), p.unread, p.diags.found(), &p.diags.list),
            (t.doc.is_some(), t.unread, t.diags.found(), &t.diags.list)
        );
    }
    let err = from_sources(&Arc::from("p"), &sources, None)
        .map(|_| ())
        .expect_err("three broken files");
    let text = err.to_string();
    for file in ["12-devices.yaml", "15-devices.yaml", "17-devices.yaml"] {
        assert!(text.contains(file), "{file} is reported: {text}");
    }
    // Without the broken files, every device of every file is in the policy, in file order.
    let good: Vec<Source> = sources
        .into_iter()
        .filter(|s| {
            !["12-devices.yaml", "15-devices.yaml", "17-devices.yaml"].contains(&s.rel.as_str())
        })
        .collect();
    let policy = from_sources(&Arc::from("p"), &good, None).unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<&str> = policy.devices.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cam-1", "dev-0", "dev-1", "dev-3", "dev-4", "dev-6", "dev-8", "dev-9", "fishtank"
        ]
    );
}
