#![doc = include_str!("../README.md")]

#[cfg(feature = "parquet")]
mod read;
#[cfg(not(feature = "parquet"))]
mod unsupported;
#[cfg(feature = "parquet")]
mod write;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

#[cfg(feature = "parquet")]
pub use read::{Importer, import};
#[cfg(not(feature = "parquet"))]
pub use unsupported::{Exporter, Importer, export, import};
#[cfg(feature = "parquet")]
pub use write::{Exporter, export};

/// The label holding the metric name; also a column of every file.
pub const METRIC_NAME: &str = "__name__";
/// The time column: `Datetime(ms, "UTC")`.
pub const TIMESTAMP: &str = "timestamp";
/// The value column: `Float64`.
pub const VALUE: &str = "value";
/// The extension of the files written and read.
pub const EXTENSION: &str = "parquet";

/// One series: its labels (the metric name under [`METRIC_NAME`]) and its points.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesHistory {
    /// Label name → value, `__name__` included.
    pub labels: BTreeMap<String, String>,
    /// `(timestamp ms since the Unix epoch, value)`, oldest first.
    pub points: Vec<(i64, f64)>,
}

impl SeriesHistory {
    /// The metric name, if the series has one.
    pub fn metric(&self) -> Option<&str> {
        self.labels.get(METRIC_NAME).map(String::as_str)
    }
}

/// What an export wrote or an import read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Metrics (folders).
    pub metrics: u64,
    /// Files.
    pub files: u64,
    /// Series.
    pub series: u64,
    /// Points (rows).
    pub points: u64,
    /// Bytes of the files.
    pub bytes: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} series of {} metrics, {} points in {} files ({:.1} MiB)",
            self.series,
            self.metrics,
            self.points,
            self.files,
            self.bytes as f64 / (1024.0 * 1024.0)
        )
    }
}

/// What went wrong, with the file or folder concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file or folder failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The folder to read does not exist or is not a folder.
    #[error("{}: no such folder", path.display())]
    NoFolder {
        /// The folder.
        path: PathBuf,
    },
    /// The folder to read holds no `.parquet` file.
    #[error("{}: no .parquet files in it or its subfolders", path.display())]
    Empty {
        /// The folder.
        path: PathBuf,
    },
    /// The folder to export into already holds files.
    #[error("{}: already holds files; export into a new or empty folder", path.display())]
    NotEmpty {
        /// The folder.
        path: PathBuf,
    },
    /// This build cannot read or write Parquet.
    #[error(
        "this build of presage has no Parquet support: build it with `--features parquet` (release binaries and images have it)"
    )]
    Unsupported,
    /// A file is not Parquet, or is damaged.
    #[cfg(feature = "parquet")]
    #[error("{}: not a readable Parquet file: {source}", path.display())]
    NotParquet {
        /// The file.
        path: PathBuf,
        /// What the Parquet reader said.
        #[source]
        source: polars::error::PolarsError,
    },
    /// A file is Parquet but not history: a column is missing or of the wrong type, a value
    /// is missing.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A Parquet file could not be written.
    #[cfg(feature = "parquet")]
    #[error("{}: cannot write Parquet: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the Parquet writer said.
        #[source]
        source: polars::error::PolarsError,
    },
    /// A series given to the exporter cannot be written.
    #[error("series {series}: {message}")]
    Series {
        /// The series' labels.
        series: String,
        /// What is wrong.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `name{a="1", b="2"}` for messages.
#[cfg(feature = "parquet")]
fn display(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get(METRIC_NAME).map_or("", String::as_str);
    let rest: Vec<String> = labels
        .iter()
        .filter(|(n, _)| *n != METRIC_NAME)
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: what Prometheus accepts, and safe as a folder name.
#[cfg(feature = "parquet")]
fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(feature = "parquet")]
const MS_PER_DAY: i64 = 86_400_000;

/// The UTC day of a timestamp, as days since 1970-01-01.
#[cfg(feature = "parquet")]
fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MS_PER_DAY)
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (proleptic Gregorian calendar).
#[cfg(feature = "parquet")]
fn date_name(day: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(all(test, feature = "parquet"))]
mod tests;
