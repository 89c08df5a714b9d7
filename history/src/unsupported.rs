//! A build without the `parquet` feature: the same API, and every read or write reports
//! [`Error::Unsupported`].

use std::path::Path;

use crate::{Error, Result, SeriesHistory, Summary};

/// No value of it can exist: an importer or exporter is never created in this build.
#[derive(Debug)]
enum Never {}

/// Reads history from Parquet; see [`import`].
#[derive(Debug)]
pub struct Importer(Never);

impl Importer {
    /// What was read so far.
    pub fn summary(&self) -> &Summary {
        match self.0 {}
    }

    /// Files not read yet.
    pub fn files_left(&self) -> usize {
        match self.0 {}
    }
}

impl Iterator for Importer {
    type Item = Result<SeriesHistory>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.0 {}
    }
}

/// Reads the history under `dir`: [`Error::Unsupported`] in this build.
pub fn import(_dir: &Path) -> Result<Importer> {
    Err(Error::Unsupported)
}

/// Writes history as Parquet; see [`export`].
#[derive(Debug)]
pub struct Exporter(Never);

impl Exporter {
    /// An exporter into `dir`: [`Error::Unsupported`] in this build.
    pub fn new(_dir: &Path) -> Result<Self> {
        Err(Error::Unsupported)
    }

    /// Adds a series.
    pub fn push(&mut self, _series: SeriesHistory) -> Result<()> {
        match self.0 {}
    }

    /// Writes what is left and sums up.
    pub fn finish(self) -> Result<Summary> {
        match self.0 {}
    }
}

/// Writes `series` into `dir`: [`Error::Unsupported`] in this build.
pub fn export<I>(_dir: &Path, _series: I) -> Result<Summary>
where
    I: IntoIterator<Item = SeriesHistory>,
{
    Err(Error::Unsupported)
}
