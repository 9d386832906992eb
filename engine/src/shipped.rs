//! Runbooks and drills shipped inside the binary, so `pgdrill run smoke ...` works from any
//! directory.

/// One embedded runbook.
pub struct Shipped {
    pub name: &'static str,
    pub path: &'static str,
    pub text: &'static str,
}

/// One entry of `ALL`: `include_str!` wants a literal, so the path is written once here and
/// not twice per entry.
macro_rules! shipped {
    ($name:literal, $path:literal) => {
        Shipped { name: $name, path: $path, text: include_str!(concat!("../../", $path)) }
    };
}

const ALL: &[Shipped] = &[
    shipped!("backup", "runbooks/backup.yaml"),
    shipped!("prune", "runbooks/prune.yaml"),
    shipped!("verify", "runbooks/verify.yaml"),
    shipped!("restore", "runbooks/restore.yaml"),
    shipped!("offsite", "runbooks/offsite.yaml"),
    shipped!("predeploy", "runbooks/predeploy.yaml"),
    shipped!("smoke", "runbooks/smoke.yaml"),
    shipped!("base-backup", "runbooks/base-backup.yaml"),
    shipped!("quickstart", "drills/quickstart.yaml"),
    shipped!("disaster-recovery", "drills/disaster-recovery.yaml"),
    shipped!("ab", "drills/ab.yaml"),
    shipped!("upgrade", "drills/upgrade.yaml"),
    shipped!("pitr", "runbooks/pitr.yaml"),
    shipped!("pitr-drill", "drills/pitr-drill.yaml"),
    shipped!("verify-physical", "runbooks/verify-physical.yaml"),
];

pub fn find(name: &str) -> Option<&'static Shipped> {
    let name = name.strip_suffix(".yaml").unwrap_or(name);
    ALL.iter().find(|s| s.name == name)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|s| s.name)
}

pub fn all() -> &'static [Shipped] {
    ALL
}
