//! Writing history: one folder per metric, one file per UTC day.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::{
    EXTENSION, Error, METRIC_NAME, Result, SeriesHistory, Summary, TIMESTAMP, VALUE, date_name,
    day_of, display, valid_metric_name,
};

/// Writes series into a folder, one metric at a time.
///
/// Series must arrive grouped by metric: the series of one metric one after the other, in
/// any order among themselves (they are sorted before writing). The metric before is written
/// when the next one begins, so memory holds one metric's history at a time. A metric that
/// comes back after another began is refused ([`Error::Series`]).
#[derive(Debug)]
pub struct Exporter {
    dir: PathBuf,
    current: Option<(String, Vec<SeriesHistory>)>,
    finished: HashSet<String>,
    summary: Summary,
}

impl Exporter {
    /// An exporter into `dir`, which is created if missing and must otherwise be empty.
    pub fn new(dir: &Path) -> Result<Self> {
        match fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(Error::NotEmpty {
                        path: dir.to_path_buf(),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|source| Error::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            Err(source) => {
                return Err(Error::Io {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            current: None,
            finished: HashSet::new(),
            summary: Summary::default(),
        })
    }

    /// Adds one series. Points whose value is not finite (steps without data) are left out; a
    /// series without any other point is not written.
    pub fn push(&mut self, series: SeriesHistory) -> Result<()> {
        let Some(metric) = series.metric() else {
            return Err(Error::Series {
                series: display(&series.labels),
                message: format!("no metric name (label {METRIC_NAME})"),
            });
        };
        if !valid_metric_name(metric) {
            return Err(Error::Series {
                series: display(&series.labels),
                message: format!("invalid metric name {metric:?}"),
            });
        }
        if let Some((name, list)) = &mut self.current
            && name == metric
        {
            list.push(series);
            return Ok(());
        }
        if self.finished.contains(metric) {
            return Err(Error::Series {
                series: display(&series.labels),
                message: format!(
                    "the series of metric {metric} must come one after the other; it was already written"
                ),
            });
        }
        let metric = metric.to_string();
        self.flush()?;
        self.current = Some((metric, vec![series]));
        Ok(())
    }

    /// Writes what is left and sums up.
    pub fn finish(mut self) -> Result<Summary> {
        self.flush()?;
        Ok(self.summary)
    }

    fn flush(&mut self) -> Result<()> {
        let Some((metric, mut list)) = self.current.take() else {
            return Ok(());
        };
        self.finished.insert(metric.clone());
        for s in &mut list {
            s.points.retain(|(_, v)| v.is_finite());
            s.points.sort_by_key(|(t, _)| *t);
        }
        list.retain(|s| !s.points.is_empty());
        if list.is_empty() {
            return Ok(());
        }
        list.sort_by(|a, b| a.labels.cmp(&b.labels));
        let written = write_metric(&self.dir.join(&metric), &list)?;
        self.summary.metrics += 1;
        self.summary.series += list.len() as u64;
        self.summary.points += list.iter().map(|s| s.points.len() as u64).sum::<u64>();
        self.summary.files += written.0;
        self.summary.bytes += written.1;
        Ok(())
    }
}

/// Writes `series` into `dir` (see the crate documentation for the layout) and sums up.
///
/// The series must be grouped by metric, as [`Exporter`] explains.
pub fn export<I>(dir: &Path, series: I) -> Result<Summary>
where
    I: IntoIterator<Item = SeriesHistory>,
{
    let mut exporter = Exporter::new(dir)?;
    for s in series {
        exporter.push(s)?;
    }
    exporter.finish()
}

/// The rows of one day: which series and which point range of it.
#[derive(Default)]
struct DayRows {
    /// `(index into the metric's series, first point, end point)`.
    runs: Vec<(usize, usize, usize)>,
    rows: usize,
}

/// Writes one metric's series (sorted, non-empty, finite points in time order): one file per
/// day. Returns the files and bytes written.
fn write_metric(dir: &Path, series: &[SeriesHistory]) -> Result<(u64, u64)> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let label_names: Vec<&str> = series
        .iter()
        .flat_map(|s| s.labels.keys().map(String::as_str))
        .filter(|n| *n != METRIC_NAME)
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .collect();
    let mut days: BTreeMap<i64, DayRows> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        let mut start = 0;
        while start < s.points.len() {
            let day = day_of(s.points[start].0);
            let len = s.points[start..]
                .iter()
                .take_while(|(t, _)| day_of(*t) == day)
                .count();
            let rows = days.entry(day).or_default();
            rows.runs.push((i, start, start + len));
            rows.rows += len;
            start += len;
        }
    }
    let (mut files, mut bytes) = (0, 0);
    for (day, rows) in days {
        let path = dir.join(format!("{}.{EXTENSION}", date_name(day)));
        let mut frame = day_frame(series, &label_names, &rows).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        bytes += write_file(&path, &mut frame)?;
        files += 1;
    }
    Ok((files, bytes))
}

fn day_frame(
    series: &[SeriesHistory],
    label_names: &[&str],
    rows: &DayRows,
) -> PolarsResult<DataFrame> {
    let mut ts = Vec::with_capacity(rows.rows);
    let mut values = Vec::with_capacity(rows.rows);
    for &(i, from, to) in &rows.runs {
        for &(t, v) in &series[i].points[from..to] {
            ts.push(t);
            values.push(v);
        }
    }
    let label_column = |name: &str| -> Column {
        let mut values: Vec<Option<&str>> = Vec::with_capacity(rows.rows);
        for &(i, from, to) in &rows.runs {
            let value = series[i].labels.get(name).map(String::as_str);
            values.extend(std::iter::repeat_n(value, to - from));
        }
        Column::new(name.into(), values)
    };
    let mut columns = Vec::with_capacity(label_names.len() + 3);
    columns.push(
        Int64Chunked::from_vec(TIMESTAMP.into(), ts)
            .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
            .into_column(),
    );
    columns.push(Float64Chunked::from_vec(VALUE.into(), values).into_column());
    columns.push(label_column(METRIC_NAME));
    for name in label_names {
        columns.push(label_column(name));
    }
    DataFrame::new(rows.rows, columns)
}

/// Writes a frame next to `path` and renames it into place, so a file is never seen half
/// written. Returns its size.
fn write_file(path: &Path, frame: &mut DataFrame) -> Result<u64> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = fs::File::create(&tmp).map_err(io)?;
    let result = ParquetWriter::new(file)
        .with_compression(ParquetCompression::Zstd(None))
        .with_statistics(StatisticsOptions::full())
        .finish(frame);
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    fs::rename(&tmp, path).map_err(io)?;
    Ok(fs::metadata(path).map_err(io)?.len())
}
