//! Runbooks and drills shipped inside the binary, so `pgdrill run smoke ...` works from any
//! directory.

/// One embedded runbook.
pub struct Shipped {
    pub name: &'static str,
    pub path: &'static str,
    pub text: &'static str,
}

const ALL: &[Shipped] = &[
    Shipped { name: "backup", path: "runbooks/backup.yaml", text: include_str!("../../runbooks/backup.yaml") },
    Shipped { name: "prune", path: "runbooks/prune.yaml", text: include_str!("../../runbooks/prune.yaml") },
    Shipped { name: "verify", path: "runbooks/verify.yaml", text: include_str!("../../runbooks/verify.yaml") },
    Shipped { name: "restore", path: "runbooks/restore.yaml", text: include_str!("../../runbooks/restore.yaml") },
    Shipped { name: "offsite", path: "runbooks/offsite.yaml", text: include_str!("../../runbooks/offsite.yaml") },
    Shipped { name: "predeploy", path: "runbooks/predeploy.yaml", text: include_str!("../../runbooks/predeploy.yaml") },
    Shipped { name: "smoke", path: "runbooks/smoke.yaml", text: include_str!("../../runbooks/smoke.yaml") },
    Shipped {
        name: "base-backup",
        path: "runbooks/base-backup.yaml",
        text: include_str!("../../runbooks/base-backup.yaml"),
    },
    Shipped { name: "quickstart", path: "drills/quickstart.yaml", text: include_str!("../../drills/quickstart.yaml") },
    Shipped {
        name: "disaster-recovery",
        path: "drills/disaster-recovery.yaml",
        text: include_str!("../../drills/disaster-recovery.yaml"),
    },
    Shipped { name: "ab", path: "drills/ab.yaml", text: include_str!("../../drills/ab.yaml") },
    Shipped { name: "upgrade", path: "drills/upgrade.yaml", text: include_str!("../../drills/upgrade.yaml") },
    Shipped { name: "pitr", path: "runbooks/pitr.yaml", text: include_str!("../../runbooks/pitr.yaml") },
    Shipped { name: "pitr-drill", path: "drills/pitr-drill.yaml", text: include_str!("../../drills/pitr-drill.yaml") },
    Shipped {
        name: "verify-physical",
        path: "runbooks/verify-physical.yaml",
        text: include_str!("../../runbooks/verify-physical.yaml"),
    },
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
