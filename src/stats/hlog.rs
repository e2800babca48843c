//! The HdrHistogram interval log (`.hlog`).
//!
//! Unlike `.hgrm` text, an interval log stores the complete histogram (V2
//! encoding, deflate-compressed, base64) so nothing is lost, and it stores
//! one histogram per interval so a long run can be inspected second by
//! second (HdrHistogram's `HistogramLogProcessor` and plotters read it).
//! Timestamps are seconds since the start of the run; values are
//! microseconds.

use std::io::Write;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, LogIteratorError,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use super::error::StatsError;
use super::histogram::LatencyHistogram;

/// The comment written at the top of every log we produce.
pub const HLOG_COMMENT: &str =
    "risp-udp latency histogram: values in microseconds, timestamps in seconds since the start of the run";

/// Write `h` as an interval log: one interval per second when it was
/// recorded with [`LatencyHistogram::record_at`], otherwise one interval
/// holding every sample.
pub fn write_hlog(h: &LatencyHistogram, w: &mut impl Write) -> Result<(), StatsError> {
    write_hlog_with_start(h, w, None)
}

/// Like [`write_hlog`], also recording the wall-clock start of the run as the
/// log's `StartTime` and `BaseTime` so tools can place intervals in time.
pub fn write_hlog_with_start(
    h: &LatencyHistogram,
    w: &mut impl Write,
    run_start: Option<SystemTime>,
) -> Result<(), StatsError> {
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder.add_comment(HLOG_COMMENT);
    // Interval max column in the same unit as the values (µs).
    builder.with_max_value_divisor(1.0);
    if let Some(start) = run_start {
        builder.with_start_time(start);
        builder.with_base_time(start);
    }
    let mut log = builder
        .begin_log_with(w, &mut serializer)
        .map_err(StatsError::write)?;
    let map_err = |e: hdrhistogram::serialization::interval_log::IntervalLogWriterError<_>| match e
    {
        hdrhistogram::serialization::interval_log::IntervalLogWriterError::IoError(e) => {
            StatsError::write(e)
        }
        hdrhistogram::serialization::interval_log::IntervalLogWriterError::SerializeError(e) => {
            StatsError::Encode {
                reason: format!("{e:?}"),
            }
        }
    };
    if h.has_interval_series() {
        h.for_each_interval(|second, hist| {
            log.write_histogram(
                hist,
                Duration::from_secs(second),
                Duration::from_secs(1),
                None,
            )
            .map_err(map_err)
        })?;
    } else {
        log.write_histogram(h.inner(), Duration::ZERO, Duration::ZERO, None)
            .map_err(map_err)?;
    }
    Ok(())
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Read an interval log: the result holds the sum of all intervals. When
/// every interval is one second long, the per-second series is kept too, so
/// writing the result again reproduces the intervals.
pub fn read_hlog(text: &str) -> Result<LatencyHistogram, StatsError> {
    let mut intervals: Vec<(Duration, Duration, Histogram<u64>)> = Vec::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(text.as_bytes()) {
        match entry {
            Ok(LogEntry::Interval(ilh)) => {
                let number = intervals.len() + 1;
                // The encoded histogram is a slice of `text`: its line is
                // the interval's.
                let line = (ilh.encoded_histogram().as_ptr() as usize)
                    .checked_sub(text.as_ptr() as usize)
                    .filter(|offset| *offset <= text.len())
                    .map_or(0, |offset| line_of(text, offset));
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(ilh.encoded_histogram().trim())
                    .map_err(|e| {
                        StatsError::malformed(
                            line,
                            format!("interval {number}: histogram is not valid base64: {e}"),
                        )
                    })?;
                let hist: Histogram<u64> = deserializer
                    .deserialize(&mut bytes.as_slice())
                    .map_err(|e| {
                        StatsError::malformed(
                            line,
                            format!("interval {number}: not a valid V2 histogram: {e}"),
                        )
                    })?;
                intervals.push((ilh.start_timestamp(), ilh.duration(), hist));
            }
            Ok(LogEntry::StartTime(_)) | Ok(LogEntry::BaseTime(_)) => {}
            Err(LogIteratorError::ParseError { offset }) => {
                return Err(StatsError::malformed(
                    line_of(text, offset),
                    "not an interval log line (expected [Tag=...,]start,length,max,base64-histogram)",
                ));
            }
        }
    }
    if intervals.is_empty() {
        return Err(StatsError::malformed(0, "interval log has no histograms"));
    }
    let per_second = intervals
        .iter()
        .all(|(_, len, _)| *len == Duration::from_secs(1));
    let mut out = LatencyHistogram::new();
    for (start, _, hist) in &intervals {
        if per_second {
            out.add_interval(start.as_secs(), hist);
        } else {
            out.add_total(hist);
        }
    }
    Ok(out)
}
