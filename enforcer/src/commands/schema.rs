//! `schema`, `completions` and the hidden `manpages`: what the command line and the policy format
//! say about themselves, for editors, shells and `man`. Packaging (`cargo xtask package`) runs
//! them on the built binary, so the installed files always match it.

use std::{io::Write as _, path::Path};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

use crate::{cli::Cli, exit, policy::json_schema::POLICY_SCHEMA};

/// `enforcer schema`: the JSON Schema of one policy file.
pub fn schema() -> Result<u8> {
    let mut out = std::io::stdout().lock();
    out.write_all(POLICY_SCHEMA.as_bytes())
        .and_then(|()| out.flush())
        .context("write the schema to stdout")?;
    Ok(exit::OK)
}

/// `enforcer completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "enforcer", &mut std::io::stdout().lock());
    Ok(exit::OK)
}

/// `enforcer manpages DIR`: `enforcer.1` and one `enforcer-COMMAND.1` per visible command.
pub fn manpages(dir: &Path) -> Result<u8> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let cmd = Cli::command();
    write_page(dir, "enforcer", cmd.clone())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("enforcer-{}", sub.get_name());
        write_page(
            dir,
            &name,
            sub.clone().name(name.clone()).bin_name(name.clone()),
        )?;
    }
    Ok(exit::OK)
}

fn write_page(dir: &Path, name: &str, cmd: clap::Command) -> Result<()> {
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .with_context(|| format!("render the man page {name}"))?;
    std::fs::write(&path, buf).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manpages_writes_one_page_per_visible_command() {
        let dir = std::env::temp_dir().join(format!("enforcer-man-{}", std::process::id()));
        manpages(&dir).expect("pages written");
        let page = std::fs::read_to_string(dir.join("enforcer-check.1")).expect("check page");
        assert!(page.contains(".TH enforcer-check 1"), "{page}");
        for sub in Cli::command().get_subcommands() {
            let exists = dir.join(format!("enforcer-{}.1", sub.get_name())).exists();
            assert_eq!(exists, !sub.is_hide_set(), "{}", sub.get_name());
        }
        assert!(dir.join("enforcer.1").exists());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
