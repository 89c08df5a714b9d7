//! The crate's error type.

/// What can go wrong in alerting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A selector or matcher that does not parse.
    #[error("invalid selector `{text}`: {reason}")]
    Selector {
        /// The selector as written.
        text: String,
        /// Why it was refused.
        reason: String,
    },
    /// A rule that cannot be compiled.
    #[error("rule `{rule}`: {reason}")]
    Rule {
        /// The rule's name.
        rule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A remediation whose metric pattern is not a regular expression.
    #[error("remediation `{pattern}`: {reason}")]
    Remediation {
        /// The pattern as written.
        pattern: String,
        /// Why it was refused.
        reason: String,
    },
    /// A silence that cannot be created.
    #[error("invalid silence: {0}")]
    Silence(String),
    /// No silence has this id.
    #[error("no silence with id `{0}`")]
    SilenceNotFound(String),
    /// Reading or writing the state file failed.
    #[error("state file {path}: {source}")]
    StateIo {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The state file exists but does not hold valid state.
    #[error("state file {path} is corrupt: {reason}")]
    StateCorrupt {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The service has stopped and no longer answers.
    #[error("the alerting service has stopped")]
    Stopped,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
