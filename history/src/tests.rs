use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use polars::prelude::*;

use super::*;

/// 2026-11-24T00:00:00Z.
const DAY0: i64 = 1_795_478_400_000;
const STEP: i64 = 60_000;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Three metrics over a bit more than two days: values that test the bits (negative zero, a
/// subnormal, huge and irrational numbers), a gap, NaN steps, a series without a label the
/// others of its metric have.
fn sample() -> Vec<SeriesHistory> {
    let mut out = Vec::new();
    let odd = [
        -0.0,
        f64::MIN_POSITIVE / 3.0,
        1e300,
        -1e-300,
        std::f64::consts::PI,
        0.1 + 0.2,
        f64::MAX,
    ];
    for (i, host) in ["a", "b"].iter().enumerate() {
        let points = (0..(2 * 1440 + 90))
            .filter(|k| !(100..130).contains(k))
            .map(|k| {
                let t = DAY0 + k * STEP;
                let v = if k % 97 == 0 {
                    odd[(k as usize / 97) % odd.len()]
                } else {
                    (k as f64 / 137.0).sin() * 10.0 + i as f64
                };
                (t, v)
            })
            .collect();
        out.push(SeriesHistory {
            labels: labels(&[("__name__", "node_load1"), ("instance", host)]),
            points,
        });
    }
    out.push(SeriesHistory {
        labels: labels(&[
            ("__name__", "system_filesystem_utilization"),
            ("instance", "a"),
            ("mountpoint", "/var"),
        ]),
        points: (0..1500)
            .map(|k| (DAY0 + 600 * STEP + k * STEP, 0.5 + k as f64 * 1e-4))
            .collect(),
    });
    out.push(SeriesHistory {
        labels: labels(&[
            ("__name__", "system_filesystem_utilization"),
            ("instance", "b"),
        ]),
        points: vec![
            (DAY0 + 5, 0.25),
            (DAY0 + STEP, f64::NAN),
            (DAY0 + 2 * STEP, 0.3),
        ],
    });
    out.push(SeriesHistory {
        labels: labels(&[("__name__", "job:requests:rate5m"), ("job", "api")]),
        points: vec![(DAY0 - 1, 7.0), (DAY0, 8.0)],
    });
    out
}

/// What the export should bring back: finite points only, series sorted by labels.
fn expected(mut series: Vec<SeriesHistory>) -> Vec<SeriesHistory> {
    for s in &mut series {
        s.points.retain(|(_, v)| v.is_finite());
    }
    series.sort_by(|a, b| (a.metric(), &a.labels).cmp(&(b.metric(), &b.labels)));
    series
}

fn sorted_by_metric(mut series: Vec<SeriesHistory>) -> Vec<SeriesHistory> {
    series.sort_by(|a, b| a.metric().cmp(&b.metric()));
    series
}

fn read_all(dir: &Path) -> Vec<SeriesHistory> {
    let mut got: Vec<SeriesHistory> = import(dir).unwrap().collect::<Result<_>>().unwrap();
    got.sort_by(|a, b| (a.metric(), &a.labels).cmp(&(b.metric(), &b.labels)));
    got
}

/// Series as labels and `(ms, value bits)` points.
type Bits = Vec<(BTreeMap<String, String>, Vec<(i64, u64)>)>;

fn bits(series: &[SeriesHistory]) -> Bits {
    series
        .iter()
        .map(|s| {
            (
                s.labels.clone(),
                s.points.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
            )
        })
        .collect()
}

fn read_frame(path: &Path) -> DataFrame {
    ParquetReader::new(fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

#[test]
fn round_trip_is_exact_to_the_bit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let summary = export(&out, sorted_by_metric(sample())).unwrap();
    let want = expected(sample());
    let points: u64 = want.iter().map(|s| s.points.len() as u64).sum();
    assert_eq!(summary.series, 5);
    assert_eq!(summary.metrics, 3);
    assert_eq!(summary.points, points);
    // node_load1: 3 days; filesystem: 2 days; the rate: 2 days (one point either side of
    // midnight).
    assert_eq!(summary.files, 7);
    let got = read_all(&out);
    assert_eq!(bits(&got), bits(&want));
    // -0.0 and the subnormal survive as such (bit comparison above); check one explicitly.
    assert!(got.iter().any(|s| {
        s.points
            .iter()
            .any(|(_, v)| v.to_bits() == (-0.0f64).to_bits())
    }));

    let mut importer = import(&out).unwrap();
    assert_eq!(importer.files_left(), 7);
    for s in importer.by_ref() {
        s.unwrap();
    }
    assert_eq!(importer.summary().points, points);
    assert_eq!(importer.summary().series, 5);
    assert_eq!(importer.summary().files, 7);
}

#[test]
fn files_are_one_per_metric_and_utc_day() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path(), sorted_by_metric(sample())).unwrap();
    let mut files: Vec<String> = Vec::new();
    for metric in fs::read_dir(dir.path()).unwrap() {
        let metric = metric.unwrap();
        for file in fs::read_dir(metric.path()).unwrap() {
            files.push(format!(
                "{}/{}",
                metric.file_name().to_string_lossy(),
                file.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    files.sort();
    assert_eq!(
        files,
        [
            "job:requests:rate5m/2026-11-23.parquet",
            "job:requests:rate5m/2026-11-24.parquet",
            "node_load1/2026-11-24.parquet",
            "node_load1/2026-11-25.parquet",
            "node_load1/2026-11-26.parquet",
            "system_filesystem_utilization/2026-11-24.parquet",
            "system_filesystem_utilization/2026-11-25.parquet",
        ]
    );
}

#[test]
fn polars_reads_the_schema_and_rows_back() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path(), sorted_by_metric(sample())).unwrap();
    let frame = read_frame(
        &dir.path()
            .join("system_filesystem_utilization/2026-11-24.parquet"),
    );
    let schema: Vec<(String, DataType)> = frame
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.dtype().clone()))
        .collect();
    assert_eq!(
        schema,
        [
            (
                "timestamp".to_string(),
                DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
            ),
            ("value".to_string(), DataType::Float64),
            ("__name__".to_string(), DataType::String),
            ("instance".to_string(), DataType::String),
            ("mountpoint".to_string(), DataType::String),
        ]
    );
    // Series a (from 10:00, 840 steps on the first day) then series b (2 finite points).
    assert_eq!(frame.height(), 840 + 2);
    let instance: Vec<Option<&str>> = frame
        .column("instance")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(instance[0], Some("a"));
    assert_eq!(instance[839], Some("a"));
    assert_eq!(instance[840], Some("b"));
    let mountpoint = frame.column("mountpoint").unwrap().str().unwrap();
    assert_eq!(mountpoint.get(0), Some("/var"));
    assert_eq!(
        mountpoint.get(840),
        None,
        "a label the series lacks is null"
    );
    assert_eq!(mountpoint.null_count(), 2);
    let ts: Vec<i64> = frame
        .column("timestamp")
        .unwrap()
        .datetime()
        .unwrap()
        .physical()
        .iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(ts[0], DAY0 + 600 * STEP);
    assert!(
        ts[..840].windows(2).all(|w| w[0] < w[1]),
        "time order within a series"
    );
    assert_eq!(&ts[840..], &[DAY0 + 5, DAY0 + 2 * STEP]);
    let values = frame.column("value").unwrap().f64().unwrap();
    assert_eq!(values.get(0), Some(0.5));
    assert_eq!(values.get(841), Some(0.3));
    assert_eq!(values.null_count(), 0);
}

#[test]
fn files_written_by_other_tools_are_read() {
    // Microsecond timestamps without a time zone, a float32 value, a categorical-free extra
    // label, an empty label value (= absent), a pandas index column, a null value (a step
    // without data), rows of two series interleaved, in a flat folder.
    let dir = tempfile::tempdir().unwrap();
    let ts = Int64Chunked::from_vec("timestamp".into(), vec![3_000, 1_000, 2_000, 1_000])
        .into_datetime(TimeUnit::Microseconds, None)
        .into_column();
    let value = Column::new("value".into(), [Some(1.5f32), Some(2.5), None, Some(4.0)]);
    let name = Column::new("__name__".into(), ["m", "m", "m", "m"]);
    let job = Column::new("job".into(), [Some("x"), Some("y"), Some("x"), Some("")]);
    let index = Column::new("__index_level_0__".into(), [0i64, 1, 2, 3]);
    let mut frame = DataFrame::new(4, vec![ts, value, name, job, index]).unwrap();
    let path = dir.path().join("other.parquet");
    ParquetWriter::new(fs::File::create(&path).unwrap())
        .finish(&mut frame)
        .unwrap();
    let got = read_all(dir.path());
    assert_eq!(
        got,
        [
            SeriesHistory {
                labels: labels(&[("__name__", "m")]),
                points: vec![(1, 4.0)],
            },
            SeriesHistory {
                labels: labels(&[("__name__", "m"), ("job", "x")]),
                points: vec![(3, 1.5)],
            },
            SeriesHistory {
                labels: labels(&[("__name__", "m"), ("job", "y")]),
                points: vec![(1, 2.5)],
            },
        ]
    );
}

fn import_error(dir: &Path) -> String {
    match import(dir) {
        Err(e) => e.to_string(),
        Ok(mut it) => match it.find_map(|r| r.err()) {
            Some(e) => e.to_string(),
            None => panic!("{} imported without an error", dir.display()),
        },
    }
}

#[test]
fn bad_folders_and_files_are_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    assert_eq!(
        import_error(&missing),
        format!("{}: no such folder", missing.display())
    );
    let empty = dir.path().join("empty");
    fs::create_dir_all(empty.join("sub")).unwrap();
    fs::write(empty.join("README.txt"), "not data").unwrap();
    assert_eq!(
        import_error(&empty),
        format!(
            "{}: no .parquet files in it or its subfolders",
            empty.display()
        )
    );

    let junk = dir.path().join("junk");
    export(&junk, sorted_by_metric(sample())).unwrap();
    let bad = junk.join("node_load1/2026-11-25.parquet");
    fs::write(&bad, "timestamp,value\n1,2\n").unwrap();
    let e = import_error(&junk);
    assert!(
        e.starts_with(&format!("{}: not a readable Parquet file: ", bad.display())),
        "{e}"
    );

    let columns = dir.path().join("columns");
    fs::create_dir_all(&columns).unwrap();
    let mut frame = DataFrame::new(
        1,
        vec![
            Column::new("time".into(), [1i64]),
            Column::new("value".into(), [1.0f64]),
        ],
    )
    .unwrap();
    let path = columns.join("x.parquet");
    ParquetWriter::new(fs::File::create(&path).unwrap())
        .finish(&mut frame)
        .unwrap();
    let e = import_error(&columns);
    assert!(
        e.starts_with(&format!("{}: no `timestamp` column", path.display())),
        "{e}"
    );

    let mut frame = DataFrame::new(
        1,
        vec![
            Column::new("timestamp".into(), [1i64]),
            Column::new("value".into(), [1.0f64]),
            Column::new("__name__".into(), ["m"]),
        ],
    )
    .unwrap();
    ParquetWriter::new(fs::File::create(&path).unwrap())
        .finish(&mut frame)
        .unwrap();
    assert_eq!(
        import_error(&columns),
        format!(
            "{}: column `timestamp` is i64, expected a datetime",
            path.display()
        )
    );
}

#[test]
fn exports_refuse_what_they_cannot_write_faithfully() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("old.parquet"), "x").unwrap();
    assert_eq!(
        export(dir.path(), sample()).unwrap_err().to_string(),
        format!(
            "{}: already holds files; export into a new or empty folder",
            dir.path().display()
        )
    );
    let fresh = dir.path().join("fresh");
    // node_load1, filesystem, node_load1 again.
    let mut unsorted = sample();
    unsorted.swap(1, 2);
    let e = export(&fresh, unsorted).unwrap_err().to_string();
    assert_eq!(
        e,
        "series node_load1{instance=\"b\"}: the series of metric node_load1 must come one after the other; it was already written"
    );
    let bad = SeriesHistory {
        labels: labels(&[("__name__", "../escape")]),
        points: vec![(1, 1.0)],
    };
    let e = export(&dir.path().join("other"), [bad])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "series ../escape{}: invalid metric name \"../escape\"");
    let nameless = SeriesHistory {
        labels: labels(&[("job", "x")]),
        points: vec![(1, 1.0)],
    };
    let e = export(&dir.path().join("third"), [nameless])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "series {job=\"x\"}: no metric name (label __name__)");
}

#[test]
fn an_export_of_nothing_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let only_gaps = SeriesHistory {
        labels: labels(&[("__name__", "m")]),
        points: vec![(1, f64::NAN)],
    };
    let summary = export(dir.path(), [only_gaps]).unwrap();
    assert_eq!(summary, Summary::default());
    assert!(import(dir.path()).is_err());
}

#[test]
fn dates_are_utc_calendar_days() {
    assert_eq!(date_name(0), "1970-01-01");
    assert_eq!(date_name(-1), "1969-12-31");
    assert_eq!(date_name(11_016), "2000-02-29");
    assert_eq!(date_name(20_000), "2024-10-04");
    assert_eq!(date_name(day_of(DAY0)), "2026-11-24");
    assert_eq!(date_name(day_of(DAY0 - 1)), "2026-11-23");
    assert_eq!(day_of(-1), -1);
}
