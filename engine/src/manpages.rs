//! Manual pages from the command line's own definitions: `pgdrill.1` and one
//! `pgdrill-COMMAND.1` (and `pgdrill-COMMAND-SUBCOMMAND.1`) per subcommand, so a page can never
//! describe a flag the binary does not have. The package build (ci/package.sh) calls
//! `pgdrill man DIR`.

use std::path::Path;

/// Write every page into `dir`; returns how many were written. Hidden subcommands (this one)
/// get no page.
pub fn write_all(cmd: clap::Command, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd;
    cmd.build();
    let mut written = 0;
    write_tree(&cmd, "pgdrill", dir, &mut written)?;
    Ok(written)
}

fn write_tree(cmd: &clap::Command, name: &str, dir: &Path, written: &mut usize) -> std::io::Result<()> {
    // A subcommand's page is titled with its full name (`pgdrill-backups-list`), as git's and
    // systemd's are, so `man pgdrill-run` finds it.
    let page = cmd.clone().name(name.to_string()).display_name(name.to_string()).bin_name(name.replace("-", " "));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    // Written beside and renamed: an interrupted build leaves no half page under the name.
    let path = dir.join(format!("{name}.1"));
    let tmp = dir.join(format!(".{name}.1.tmp"));
    std::fs::write(&tmp, &buf)?;
    std::fs::rename(&tmp, &path)?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_tree(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
