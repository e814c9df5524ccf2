//! `enforcer import mud`: a MUD file (RFC 8520) converted into policy YAML for review. It reads a
//! local file and prints; it never applies anything.

use anyhow::Result;

use crate::{
    cli::{Import, ImportOutput},
    exit,
    mud::{MudError, convert, profile},
};

pub fn run(what: &Import) -> Result<u8> {
    let Import::Mud {
        file,
        device,
        maps,
        output,
    } = what;
    let path = file.display().to_string();
    let converted = (|| -> Result<(String, String), MudError> {
        let text = std::fs::read_to_string(file).map_err(|source| MudError::Read {
            path: path.clone(),
            source,
        })?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| MudError::Json {
                path: path.clone(),
                source,
            })?;
        let (about, entries) = profile::read(&doc)?;
        let rules = convert::convert(device, &entries, &convert::parse_maps(maps)?)?;
        let yaml = convert::to_yaml(&rules, &path, &about)
            .map_err(|e| MudError::NotMud(format!("cannot write YAML: {e}")))?;
        let json = serde_json::to_string_pretty(&rules)
            .map_err(|e| MudError::NotMud(format!("cannot write JSON: {e}")))?;
        Ok((yaml, json))
    })();
    match converted {
        Ok((yaml, json)) => {
            #[expect(clippy::print_stdout, reason = "CLI output")]
            match output {
                ImportOutput::Yaml => print!("{yaml}"),
                ImportOutput::Json => println!("{json}"),
            }
            Ok(exit::OK)
        }
        Err(e) => {
            let chain = crate::daemon::error_chain(&e);
            #[expect(clippy::print_stderr, reason = "CLI output")]
            {
                eprintln!("enforcer: error: {chain}");
            }
            Ok(exit::INVALID)
        }
    }
}
