//! Reading history back: every `.parquet` file under a folder.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::{
    EXTENSION, Error, METRIC_NAME, Result, SeriesHistory, Summary, TIMESTAMP, VALUE, display,
};

/// The series of a folder of Parquet files, one folder of files at a time.
///
/// Files in the same folder are merged: a series spread over several days comes out once,
/// with its points in time order. Memory holds one folder's series at a time (one metric in
/// the layout [`crate::export`] writes). Series come out sorted by labels within a folder,
/// folders in path order. After an error the iterator ends.
#[derive(Debug)]
pub struct Importer {
    /// Folders left to read, each with its files, in reverse order.
    groups: Vec<(PathBuf, Vec<PathBuf>)>,
    ready: std::vec::IntoIter<SeriesHistory>,
    summary: Summary,
    failed: bool,
}

/// Lists the `.parquet` files under `dir` (hidden files and names starting with `_` are
/// skipped, as Spark and pyarrow do) and returns an iterator over their series.
///
/// Fails at once when `dir` is not a folder or holds no `.parquet` file; files are read as
/// the iterator advances, and a file that is not Parquet or lacks the `timestamp` or `value`
/// columns ends it with an error naming that file.
pub fn import(dir: &Path) -> Result<Importer> {
    if !dir.is_dir() {
        return Err(Error::NoFolder {
            path: dir.to_path_buf(),
        });
    }
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    if files.is_empty() {
        return Err(Error::Empty {
            path: dir.to_path_buf(),
        });
    }
    files.sort();
    let mut groups: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    for file in files {
        let parent = file.parent().map(Path::to_path_buf).unwrap_or_default();
        match groups.last_mut() {
            Some((p, list)) if *p == parent => list.push(file),
            _ => groups.push((parent, vec![file])),
        }
    }
    groups.reverse();
    Ok(Importer {
        groups,
        ready: Vec::new().into_iter(),
        summary: Summary::default(),
        failed: false,
    })
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == EXTENSION) {
            out.push(path);
        }
    }
    Ok(())
}

impl Importer {
    /// What has been read so far: after the last series, everything.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Files still to read.
    pub fn files_left(&self) -> usize {
        self.groups.iter().map(|(_, f)| f.len()).sum()
    }

    fn read_group(&mut self, dir: &Path, files: &[PathBuf]) -> Result<Vec<SeriesHistory>> {
        let mut series = SeriesMap::new();
        for file in files {
            read_file(file, &mut series)?;
            self.summary.files += 1;
            self.summary.bytes += fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        }
        let mut out = Vec::with_capacity(series.len());
        for (labels, mut points) in series {
            points.sort_by_key(|(t, _)| *t);
            let mut clash = None;
            points.dedup_by(|b, a| {
                if a.0 != b.0 {
                    return false;
                }
                if a.1.to_bits() != b.1.to_bits() && clash.is_none() {
                    clash = Some(a.0);
                }
                true
            });
            if let Some(t) = clash {
                return Err(Error::Invalid {
                    path: dir.to_path_buf(),
                    message: format!(
                        "series {} has two different values at timestamp {t} ms",
                        display(&labels)
                    ),
                });
            }
            self.summary.points += points.len() as u64;
            out.push(SeriesHistory { labels, points });
        }
        self.summary.series += out.len() as u64;
        self.summary.metrics += 1;
        Ok(out)
    }
}

impl Iterator for Importer {
    type Item = Result<SeriesHistory>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(s) = self.ready.next() {
                return Some(Ok(s));
            }
            let (dir, files) = self.groups.pop()?;
            match self.read_group(&dir, &files) {
                Ok(list) => self.ready = list.into_iter(),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Milliseconds per unit of a datetime column.
fn to_ms(unit: TimeUnit, v: i64) -> i64 {
    match unit {
        TimeUnit::Milliseconds => v,
        TimeUnit::Microseconds => v.div_euclid(1_000),
        TimeUnit::Nanoseconds => v.div_euclid(1_000_000),
    }
}

/// Series by labels, with their points.
type SeriesMap = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

/// Consecutive rows of one series: the label column values, and the points.
type Run = (Vec<Option<String>>, Vec<(i64, f64)>);

/// Reads one file's rows into `series`.
fn read_file(path: &Path, series: &mut SeriesMap) -> Result<()> {
    let invalid = |message: String| Error::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let file = fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let frame = ParquetReader::new(file)
        .finish()
        .map_err(|source| Error::NotParquet {
            path: path.to_path_buf(),
            source,
        })?;
    let column = |name: &str| {
        frame.column(name).map_err(|_| {
            invalid(format!(
                "no `{name}` column: history files have `{TIMESTAMP}` (datetime), `{VALUE}` (double), `{METRIC_NAME}` and one string column per label"
            ))
        })
    };
    let ts_column = column(TIMESTAMP)?;
    let DataType::Datetime(unit, _) = ts_column.dtype() else {
        return Err(invalid(format!(
            "column `{TIMESTAMP}` is {}, expected a datetime",
            ts_column.dtype()
        )));
    };
    let unit = *unit;
    let timestamps = ts_column
        .datetime()
        .map_err(|e| invalid(format!("column `{TIMESTAMP}`: {e}")))?
        .physical()
        .clone();
    let value_column = column(VALUE)?;
    if !value_column.dtype().is_primitive_numeric() {
        return Err(invalid(format!(
            "column `{VALUE}` is {}, expected a number",
            value_column.dtype()
        )));
    }
    let values = value_column
        .cast(&DataType::Float64)
        .map_err(|e| invalid(format!("column `{VALUE}`: {e}")))?;
    let values = values
        .f64()
        .map_err(|e| invalid(format!("column `{VALUE}`: {e}")))?;
    column(METRIC_NAME)?;

    // Label columns: every other column but Prometheus' reserved `__…` names.
    let mut label_columns: Vec<(String, StringChunked)> = Vec::new();
    for c in frame.columns() {
        let name = c.name().as_str();
        if name == TIMESTAMP || name == VALUE || (name.starts_with("__") && name != METRIC_NAME) {
            continue;
        }
        let text = c
            .cast(&DataType::String)
            .map_err(|e| invalid(format!("label column `{name}` is not text: {e}")))?;
        let text = text
            .str()
            .map_err(|e| invalid(format!("label column `{name}`: {e}")))?
            .clone();
        label_columns.push((name.to_string(), text));
    }
    let mut current: Option<Run> = None;
    let mut flush = |current: Option<Run>| {
        if let Some((key, points)) = current {
            if points.is_empty() {
                return;
            }
            let labels: BTreeMap<String, String> = label_columns
                .iter()
                .zip(key)
                .filter_map(|((n, _), v)| v.filter(|v| !v.is_empty()).map(|v| (n.clone(), v)))
                .collect();
            series.entry(labels).or_default().extend(points);
        }
    };
    let mut row_values: Vec<Option<&str>> = Vec::with_capacity(label_columns.len());
    for (row, (t, v)) in timestamps.iter().zip(values.iter()).enumerate() {
        row_values.clear();
        row_values.extend(label_columns.iter().map(|(_, c)| c.get(row)));
        let same = current.as_ref().is_some_and(|(key, _)| {
            key.iter()
                .map(Option::as_deref)
                .eq(row_values.iter().copied())
        });
        if !same {
            let name = label_columns
                .iter()
                .zip(&row_values)
                .find(|((n, _), _)| n == METRIC_NAME)
                .and_then(|(_, v)| *v);
            if name.is_none_or(str::is_empty) {
                return Err(invalid(format!(
                    "row {row}: no metric name ({METRIC_NAME})"
                )));
            }
            flush(current.take());
            current = Some((
                row_values.iter().map(|v| v.map(str::to_string)).collect(),
                Vec::new(),
            ));
        }
        let Some(t) = t else {
            return Err(invalid(format!("row {row}: no {TIMESTAMP}")));
        };
        // A missing value is a step without data.
        if let (Some(v), Some((_, points))) = (v, current.as_mut()) {
            points.push((to_ms(unit, t), v));
        }
    }
    flush(current.take());
    Ok(())
}
