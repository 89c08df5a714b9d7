//! The trend model inside MSTL: AutoETS fitted on the recent tail of the deseasonalised series.
//!
//! AutoETS' model search is most of a seasonal fit's cost and grows with the series length,
//! while the trend that matters for the next hours is the recent one. Fitting it on the last
//! couple of days keeps a refit in the tens of milliseconds at 14 days of history. In-sample,
//! the older part of the series is returned as it is (the caller measures residuals on the tail
//! only).

use std::borrow::Cow;

use augurs::ets::AutoETS;
use augurs::mstl::{FittedTrendModel, TrendModel};
use augurs::{Fit, Forecast, Predict};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// AutoETS (non-seasonal) on the last `tail` points.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TailTrend {
    pub(crate) tail: usize,
}

#[derive(Debug)]
struct FittedTail {
    model: augurs::ets::FittedAutoETS,
    head: Vec<f64>,
}

impl TrendModel for TailTrend {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed("AutoETS on the recent tail")
    }

    fn fit(&self, y: &[f64]) -> Result<Box<dyn FittedTrendModel + Sync + Send>, BoxError> {
        let split = y.len().saturating_sub(self.tail);
        let model = AutoETS::non_seasonal().fit(&y[split..])?;
        Ok(Box::new(FittedTail {
            model,
            head: y[..split].to_vec(),
        }))
    }
}

impl FittedTrendModel for FittedTail {
    fn predict_inplace(
        &self,
        horizon: usize,
        level: Option<f64>,
        forecast: &mut Forecast,
    ) -> Result<(), BoxError> {
        Ok(self.model.predict_inplace(horizon, level, forecast)?)
    }

    fn predict_in_sample_inplace(
        &self,
        level: Option<f64>,
        forecast: &mut Forecast,
    ) -> Result<(), BoxError> {
        let mut tail = Forecast::empty();
        if let Some(l) = level {
            tail = Forecast::with_capacity_and_level(self.model.training_data_size(), l);
        }
        self.model.predict_in_sample_inplace(level, &mut tail)?;
        forecast.point.clear();
        forecast.point.extend_from_slice(&self.head);
        forecast.point.extend_from_slice(&tail.point);
        if let (Some(out), Some(iv)) = (forecast.intervals.as_mut(), tail.intervals.as_ref()) {
            out.lower.clear();
            out.upper.clear();
            out.lower.extend_from_slice(&self.head);
            out.upper.extend_from_slice(&self.head);
            out.lower.extend_from_slice(&iv.lower);
            out.upper.extend_from_slice(&iv.upper);
        }
        Ok(())
    }

    fn training_data_size(&self) -> Option<usize> {
        Some(self.head.len() + self.model.training_data_size())
    }
}
