//! Charts of a series around an alert, as PNG images for email.
//!
//! The chart shows the observed values (dark blue line), the expected band (grey, shaded) with
//! its expected line, the forecast band and line (orange), the rule's threshold (red horizontal
//! line), the anomalous steps (red dots) and where the forecast starts (dashed vertical line).
//! It carries no text, so no font is needed at run time: the email around it says what the
//! axes span ([`bounds`]) and what the colours mean.

use plotters::prelude::*;

use crate::signal::{Band, ChartData};

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// There is no finite value to draw.
    #[error("no data to chart")]
    NoData,
    /// The requested size is zero or too large.
    #[error("chart size {width}x{height} is out of range (1 to {MAX_SIDE} pixels a side)")]
    Size {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// Drawing failed.
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    /// PNG encoding failed.
    #[error("encoding the chart as PNG failed: {0}")]
    Encode(String),
}

/// The largest width or height accepted.
pub const MAX_SIDE: u32 = 4096;

/// What a chart spans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// First timestamp drawn (ms).
    pub start_ms: i64,
    /// Last timestamp drawn (ms).
    pub end_ms: i64,
    /// Lowest value on the vertical axis.
    pub min: f64,
    /// Highest value on the vertical axis.
    pub max: f64,
}

const ACTUAL: RGBColor = RGBColor(31, 78, 158);
const EXPECTED: RGBColor = RGBColor(110, 110, 110);
const FORECAST: RGBColor = RGBColor(230, 126, 34);
const THRESHOLD: RGBColor = RGBColor(200, 30, 30);
const GRID: RGBColor = RGBColor(225, 225, 225);

/// The time and value ranges a chart of `data` spans (values padded by 5% so lines do not sit
/// on the edge), or `None` when there is no finite point.
pub fn bounds(data: &ChartData) -> Option<Bounds> {
    let mut times = Vec::new();
    let mut values = Vec::new();
    let mut band = |t: i64, b: &Band| {
        times.push(t);
        values.extend(
            [b.expected, b.lower, b.upper]
                .into_iter()
                .filter(|v| v.is_finite()),
        );
    };
    for (t, b) in data.expected.iter().chain(&data.forecast) {
        band(*t, b);
    }
    for (t, v) in data.actual.iter().chain(&data.anomalies) {
        if v.is_finite() {
            times.push(*t);
            values.push(*v);
        }
    }
    let start_ms = *times.iter().min()?;
    let end_ms = *times.iter().max()?;
    if let Some(t) = data.threshold.filter(|t| t.is_finite()) {
        values.push(t);
    }
    let mut min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let mut max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !min.is_finite() || !max.is_finite() {
        return None;
    }
    let span = max - min;
    let pad = if span > 0.0 {
        span * 0.05
    } else {
        (min.abs() * 0.05).max(1.0)
    };
    min -= pad;
    max += pad;
    Some(Bounds {
        start_ms,
        end_ms,
        min,
        max,
    })
}

/// Draws `data` as a `width` × `height` RGB PNG.
pub fn render_png(data: &ChartData, width: u32, height: u32) -> Result<Vec<u8>, ChartError> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(ChartError::Size { width, height });
    }
    let b = bounds(data).ok_or(ChartError::NoData)?;
    let mut pixels = vec![255_u8; width as usize * height as usize * 3];
    draw(data, &b, &mut pixels, width, height).map_err(ChartError::Draw)?;
    encode(&pixels, width, height)
}

fn draw(
    data: &ChartData,
    b: &Bounds,
    pixels: &mut [u8],
    width: u32,
    height: u32,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let backend = BitMapBackend::<plotters::backend::RGBPixel>::with_buffer_and_format(
        pixels,
        (width, height),
    )
    .map_err(|e| err(&e))?;
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    // Time in seconds from the start keeps f64 coordinates small and exact enough.
    let x = |t: i64| (t - b.start_ms) as f64 / 1000.0;
    let x_end = x(b.end_ms).max(1.0);
    let margin = (width.min(height) / 30).clamp(2, 12);
    let mut chart = ChartBuilder::on(&root)
        .margin(margin)
        .build_cartesian_2d(0.0..x_end, b.min..b.max)
        .map_err(|e| err(&e))?;

    // Light horizontal grid at the quarters and a frame.
    let quarters = (1..4).map(|i| b.min + (b.max - b.min) * f64::from(i) / 4.0);
    chart
        .draw_series(quarters.map(|y| PathElement::new(vec![(0.0, y), (x_end, y)], GRID)))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, b.min), (x_end, b.max)],
            EXPECTED.mix(0.6).stroke_width(1),
        )))
        .map_err(|e| err(&e))?;

    let finite = |bands: &[(i64, Band)]| -> Vec<(f64, Band)> {
        bands
            .iter()
            .filter(|(_, b)| b.expected.is_finite() && b.lower.is_finite() && b.upper.is_finite())
            .map(|(t, b)| (x(*t), *b))
            .collect()
    };
    let band_polygon = |bands: &[(f64, Band)]| -> Vec<(f64, f64)> {
        let upper = bands.iter().map(|(t, b)| (*t, b.upper));
        let lower = bands.iter().rev().map(|(t, b)| (*t, b.lower));
        upper.chain(lower).collect()
    };
    let expected = finite(&data.expected);
    let forecast = finite(&data.forecast);

    let line_width = (height / 150).clamp(1, 3);
    for (bands, color) in [(&expected, EXPECTED), (&forecast, FORECAST)] {
        if bands.len() >= 2 {
            chart
                .draw_series(std::iter::once(Polygon::new(
                    band_polygon(bands),
                    color.mix(0.22).filled(),
                )))
                .map_err(|e| err(&e))?;
        }
        chart
            .draw_series(LineSeries::new(
                bands.iter().map(|(t, b)| (*t, b.expected)),
                color.stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
    }

    // Where the forecast starts.
    if let Some((t0, _)) = forecast.first() {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(*t0, b.min), (*t0, b.max)],
                4,
                4,
                EXPECTED.stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
    }

    if let Some(t) = data.threshold.filter(|t| t.is_finite()) {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, t), (x_end, t)],
                THRESHOLD.stroke_width(line_width),
            )))
            .map_err(|e| err(&e))?;
    }

    chart
        .draw_series(LineSeries::new(
            data.actual
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(t, v)| (x(*t), *v)),
            ACTUAL.stroke_width(line_width + 1),
        ))
        .map_err(|e| err(&e))?;

    let dot = (height / 60).clamp(2, 6);
    chart
        .draw_series(
            data.anomalies
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(t, v)| Circle::new((x(*t), *v), dot, THRESHOLD.filled())),
        )
        .map_err(|e| err(&e))?;

    drop(chart);
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn encode(pixels: &[u8], width: u32, height: u32) -> Result<Vec<u8>, ChartError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Balanced);
    let mut writer = encoder
        .write_header()
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    writer
        .write_image_data(pixels)
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing::chart;

    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

    fn ihdr_size(png: &[u8]) -> (u32, u32) {
        assert_eq!(&png[..8], SIGNATURE);
        assert_eq!(&png[12..16], b"IHDR");
        let w = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
        let h = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
        (w, h)
    }

    fn decode(png: &[u8]) -> Vec<u8> {
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        buf
    }

    #[test]
    fn renders_a_png_of_the_requested_size() {
        let png = render_png(&chart(0.0), 640, 280).unwrap();
        assert_eq!(ihdr_size(&png), (640, 280));
        let pixels = decode(&png);
        assert_eq!(pixels.len(), 640 * 280 * 3);
        // Something was drawn in each colour that matters.
        let has = |c: RGBColor| pixels.chunks(3).any(|p| p == [c.0, c.1, c.2]);
        assert!(has(ACTUAL), "the actual line is drawn");
        assert!(has(THRESHOLD), "the threshold and anomalies are drawn");
        assert!(has(FORECAST), "the forecast line is drawn");
    }

    #[test]
    fn differs_when_the_data_differs() {
        let a = render_png(&chart(0.0), 400, 200).unwrap();
        let b = render_png(&chart(0.05), 400, 200).unwrap();
        let mut no_threshold = chart(0.0);
        no_threshold.threshold = None;
        let c = render_png(&no_threshold, 400, 200).unwrap();
        assert_ne!(decode(&a), decode(&b));
        assert_ne!(decode(&a), decode(&c));
        // And the same data draws the same picture.
        assert_eq!(a, render_png(&chart(0.0), 400, 200).unwrap());
    }

    #[test]
    fn sparse_and_bad_input() {
        assert!(matches!(
            render_png(&ChartData::default(), 100, 100),
            Err(ChartError::NoData)
        ));
        assert!(matches!(
            render_png(&chart(0.0), 0, 100),
            Err(ChartError::Size { .. })
        ));
        assert!(matches!(
            render_png(&chart(0.0), 100, MAX_SIDE + 1),
            Err(ChartError::Size { .. })
        ));
        // One point, NaNs and a constant series still draw.
        let one = ChartData {
            actual: vec![(1000, 5.0), (2000, f64::NAN)],
            ..ChartData::default()
        };
        assert_eq!(ihdr_size(&render_png(&one, 50, 40).unwrap()), (50, 40));
        let b = bounds(&one).unwrap();
        assert!(b.min < 5.0 && b.max > 5.0);
        let only_nan = ChartData {
            actual: vec![(1000, f64::NAN)],
            ..ChartData::default()
        };
        assert!(matches!(
            render_png(&only_nan, 50, 40),
            Err(ChartError::NoData)
        ));
    }
}
