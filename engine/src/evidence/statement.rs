//! The in-toto Statement (v1) a run's evidence is: the artefacts it is about (`subject`,
//! each with a sha256), what kind of claim it makes (`predicateType`) and the claim itself
//! (`predicate`, pgdrill's record of the run). Built by the report layer from the run's
//! summary; this module only knows the envelope of the claim.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate of a pgdrill run's statement.
pub const RUN_PREDICATE: &str = "https://pgdrill.dev/evidence/run/v1";
/// The payload type of a signed checkpoint of an evidence log.
pub const CHECKPOINT_TYPE: &str = "application/vnd.pgdrill.checkpoint+json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Value,
}

/// An artefact the statement is about: a backup (by its sha256) or the runbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: std::collections::BTreeMap<String, String>,
}

impl Subject {
    pub fn sha256(name: impl Into<String>, hex: impl Into<String>) -> Subject {
        Subject { name: name.into(), digest: [("sha256".to_string(), hex.into())].into_iter().collect() }
    }
}

impl Statement {
    /// A pgdrill run statement.
    pub fn run(subject: Vec<Subject>, predicate: Value) -> Statement {
        Statement { type_: STATEMENT_TYPE.into(), subject, predicate_type: RUN_PREDICATE.into(), predicate }
    }
}
