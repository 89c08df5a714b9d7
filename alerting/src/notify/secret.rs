//! Secrets (SMTP passwords, webhook signing keys) read from a file or an environment variable.
//!
//! A [`Secret`] never shows its value in `Debug` or `Display` output, so it cannot leak into
//! logs or error messages.

use std::fmt;
use std::path::PathBuf;

use presage_config::SecretRef;

/// A secret value. Formatting it prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a secret could not be read. Never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Neither or both of `file` and `env` are set.
    #[error("a secret needs exactly one of `file` or `env`")]
    Source,
    /// The file could not be read.
    #[error("cannot read secret file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The environment variable is not set, or not UTF-8.
    #[error("environment variable `{0}` is not set (or not valid UTF-8)")]
    Env(String),
    /// The secret is empty.
    #[error("the secret from {0} is empty")]
    Empty(String),
}

/// Reads a secret: the file's contents without the trailing newline, or the variable's value.
pub fn read(reference: &SecretRef) -> Result<Secret, SecretError> {
    let (value, from) = match (&reference.file, &reference.env) {
        (Some(path), None) => {
            let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
                path: path.clone(),
                source,
            })?;
            (text, format!("file {}", path.display()))
        }
        (None, Some(var)) => {
            let value = std::env::var(var).map_err(|_| SecretError::Env(var.clone()))?;
            (value, format!("environment variable `{var}`"))
        }
        _ => return Err(SecretError::Source),
    };
    let value = value
        .strip_suffix('\n')
        .map(|v| v.strip_suffix('\r').unwrap_or(v))
        .unwrap_or(&value);
    if value.is_empty() {
        return Err(SecretError::Empty(from));
    }
    Ok(Secret(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_secret_loses_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret \n").unwrap();
        let s = read(&SecretRef {
            file: Some(path.clone()),
            env: None,
        })
        .unwrap();
        assert_eq!(s.expose(), "s3cret ");
        std::fs::write(&path, "crlf\r\n").unwrap();
        let s = read(&SecretRef {
            file: Some(path),
            env: None,
        })
        .unwrap();
        assert_eq!(s.expose(), "crlf");
    }

    #[test]
    fn env_secret_and_errors() {
        // PATH is always set; its value is as good a secret as any for this test.
        let path = std::env::var("PATH").unwrap();
        let s = read(&SecretRef {
            file: None,
            env: Some("PATH".to_string()),
        })
        .unwrap();
        assert_eq!(s.expose(), path);
        let missing = read(&SecretRef {
            file: None,
            env: Some("PRESAGE_TEST_SURELY_UNSET_VARIABLE".to_string()),
        });
        assert!(matches!(missing, Err(SecretError::Env(_))));
        assert!(matches!(
            read(&SecretRef::default()),
            Err(SecretError::Source)
        ));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(matches!(
            read(&SecretRef {
                file: Some(empty),
                env: None
            }),
            Err(SecretError::Empty(_))
        ));
    }

    #[test]
    fn formatting_redacts() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
    }
}
