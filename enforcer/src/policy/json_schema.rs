//! The JSON Schema of one policy file, for editors (the YAML language server) and other tools.
//!
//! Kept by hand beside the model rather than generated: the model keeps every value's place for
//! diagnostics, and the walker (`model::schema`) accepts shapes a derive would not describe (a
//! single value where a list is expected, null for an empty section). The tests below hold the
//! two together: every key the walker accepts is in the schema, every valid policy validates and
//! a misspelt key is rejected. The loader stays the authority (references, uniqueness, values).

/// The schema (JSON Schema draft-07, which the YAML language server reads).
pub const POLICY_SCHEMA: &str = include_str!("policy.schema.json");

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::Value;

    use super::POLICY_SCHEMA;
    use crate::policy::model::schema as walker;

    fn schema() -> Value {
        serde_json::from_str(POLICY_SCHEMA).expect("the schema is JSON")
    }

    fn validator() -> jsonschema::Validator {
        jsonschema::draft7::new(&schema()).expect("the schema is a valid draft-07 schema")
    }

    /// A YAML policy file as the JSON value a YAML language server validates.
    fn yaml_value(text: &str) -> Value {
        serde_yaml::from_str(text).expect("test policies are YAML")
    }

    fn errors(text: &str) -> Vec<String> {
        validator()
            .iter_errors(&yaml_value(text))
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect()
    }

    fn repo(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
    }

    fn yaml_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("policy directory")
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        files
    }

    /// The schema's property names at a JSON pointer.
    fn keys(schema: &Value, pointer: &str) -> Vec<String> {
        schema
            .pointer(pointer)
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("no properties at {pointer}"))
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn every_key_the_walker_accepts_is_in_the_schema_and_no_other() {
        let s = schema();
        let sections: [(&str, &[&str]); 14] = [
            ("/definitions/test/properties", walker::probes::TEST_KEYS),
            ("/definitions/guard/properties", walker::probes::GUARD_KEYS),
            ("/properties", walker::TOP_KEYS),
            (
                "/properties/zones/additionalProperties/properties",
                walker::ZONE_KEYS,
            ),
            ("/definitions/device/properties", walker::DEVICE_KEYS),
            ("/definitions/rule/properties", walker::RULE_KEYS),
            ("/properties/defaults/properties", walker::DEFAULT_KEYS),
            ("/properties/quarantine/properties", walker::QUARANTINE_KEYS),
            ("/properties/limits/properties", walker::LIMITS_KEYS),
            ("/properties/dns/properties", walker::DNS_KEYS),
            (
                "/properties/dns/properties/ttl/properties",
                walker::TTL_KEYS,
            ),
            (
                "/properties/interfaces/additionalProperties/properties",
                walker::INTERFACE_KEYS,
            ),
            (
                "/properties/quarantine/properties/when/properties",
                walker::WHEN_KEYS,
            ),
            (
                "/properties/quarantine/properties/when/properties/denied_packets/properties",
                walker::DENIED_KEYS,
            ),
        ];
        for (pointer, accepted) in sections {
            let mut in_schema = keys(&s, pointer);
            in_schema.sort();
            let mut walker_keys: Vec<String> = accepted.iter().map(|k| (*k).to_owned()).collect();
            walker_keys.sort();
            assert_eq!(in_schema, walker_keys, "keys at {pointer}");
        }
    }

    #[test]
    fn the_example_policies_and_every_valid_test_policy_validate() {
        // The loader must agree that each is valid, or this test proves nothing. A directory is
        // one policy (its files alone may lack rules); a test file is one policy on its own.
        let mut files = Vec::new();
        for dir in ["policies", "deploy/policy"] {
            crate::policy::load(&repo(dir))
                .unwrap_or_else(|e| panic!("{dir} does not load: {e:?}"));
            files.extend(yaml_files(&repo(dir)));
        }
        for file in yaml_files(&repo("tests/policies/valid")) {
            crate::policy::load(&file)
                .unwrap_or_else(|e| panic!("{} does not load: {e:?}", file.display()));
            files.push(file);
        }
        assert!(files.len() >= 8, "found only {files:?}");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable policy");
            let errs = errors(text.trim_start_matches('\u{feff}'));
            assert!(errs.is_empty(), "{}: {errs:#?}", file.display());
        }
    }

    #[test]
    fn a_misspelt_key_is_rejected_at_every_level() {
        let cases = [
            "zone:\n  office: {}\n",
            "zones:\n  office: {descripton: x}\n",
            "devices:\n  cam:\n    zone: office\n    mac: \"02:00:00:00:00:01\"\n    vendr: Axis\n",
            "rules:\n  - name: r\n    from: zone:a\n    to: zone:b\n    alow: [tcp/80]\n",
            "defaults: {acton: deny}\n",
            "quarantine:\n  zone: q\n  when: {spofing: true}\n",
            "quarantine:\n  zone: q\n  when:\n    denied_packets: {count: 10, withn: 1m}\n",
            "interfaces:\n  lan0: {rol: segment}\n",
        ];
        for text in cases {
            assert!(
                crate::policy::parse_str("misspelt.yaml", text).is_err(),
                "the loader accepts {text}"
            );
            assert!(!errors(text).is_empty(), "the schema accepts {text}");
        }
    }

    #[test]
    fn bad_values_the_schema_can_see_are_rejected() {
        for text in [
            "zones:\n  Office: {}\n",
            "defaults: {mode: enforcing}\n",
            "rules:\n  - name: r\n    from: zone:a\n    to: zone:b\n    allow: [tcp/80]\n    deny: [any]\n",
            "rules:\n  - name: r\n    from: zone:a\n    to: zone:b\n    allow: [80]\n",
            "devices:\n  cam: {zone: office}\n",
            "interfaces:\n  lan0: {role: lan}\n",
            "interfaces:\n  eth/0: {role: segment}\n",
            "interfaces:\n  abcdefghijklmnop: {role: segment}\n",
        ] {
            assert!(!errors(text).is_empty(), "the schema accepts {text}");
        }
    }
}
