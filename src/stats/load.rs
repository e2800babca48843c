//! Loading a histogram file of any supported format by looking at its
//! content.
//!
//! Users rename files, pipe them through other tools and mix ours with
//! files from wrk2 or Java programs, so the extension is only a hint: we
//! look for the `.hgrm` column header, interval-log lines, or the binary V2
//! cookie, and give a precise error when none is there.

use std::path::Path;

use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

use super::error::StatsError;
use super::hgrm::{is_header, read_hgrm_in, HgrmUnit};
use super::histogram::LatencyHistogram;
use super::hlog::read_hlog;

/// Largest file `load` will read: far beyond any histogram we write, small
/// enough that a wrong path (a disk image, a log) fails fast.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The formats [`load`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// HdrHistogram percentile-distribution text.
    Hgrm,
    /// HdrHistogram interval log.
    Hlog,
    /// A single binary V2 histogram (optionally deflate-compressed), as
    /// written by hdrhistogram's serializers.
    BinaryV2,
}

/// Decide the format of `bytes`, or `None` if it is none of ours.
pub fn sniff(bytes: &[u8]) -> Option<FileFormat> {
    // V2 cookies (big-endian): plain 0x1c849313, compressed 0x1c849314.
    if let Some(cookie) = bytes.get(..4) {
        if cookie == [0x1c, 0x84, 0x93, 0x13] || cookie == [0x1c, 0x84, 0x93, 0x14] {
            return Some(FileFormat::BinaryV2);
        }
    }
    let text = std::str::from_utf8(bytes).ok()?;
    if text.lines().any(|l| is_header(l.trim())) {
        return Some(FileFormat::Hgrm);
    }
    if text.lines().any(|l| looks_like_hlog_line(l.trim())) {
        return Some(FileFormat::Hlog);
    }
    None
}

/// True for the metadata lines or an interval line of an interval log.
fn looks_like_hlog_line(line: &str) -> bool {
    if line.starts_with("#[Histogram log format version")
        || line.starts_with("#[StartTime:")
        || line.starts_with("#[BaseTime:")
        || line.starts_with("\"StartTimestamp\"")
    {
        return true;
    }
    let body = match line.strip_prefix("Tag=") {
        Some(rest) => rest.split_once(',').map_or("", |(_, b)| b),
        None => line,
    };
    let fields: Vec<&str> = body.split(',').collect();
    fields.len() == 4
        && fields[..3].iter().all(|f| f.trim().parse::<f64>().is_ok())
        && !fields[3].trim().is_empty()
}

/// Load a histogram file (`.hgrm`, `.hlog` or binary V2), detecting the
/// format from its content. Missing, unreadable, empty and non-histogram
/// files each give their own error naming the file.
pub fn load(path: &Path) -> Result<LatencyHistogram, StatsError> {
    load_in(path, HgrmUnit::Us)
}

/// Like [`load`], reading the Value column of an `.hgrm` file in `unit`
/// (interval logs and binary histograms carry our microseconds).
pub fn load_in(path: &Path, unit: HgrmUnit) -> Result<LatencyHistogram, StatsError> {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StatsError::NotFound {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(StatsError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if size > MAX_FILE_BYTES {
        return Err(StatsError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_FILE_BYTES,
        });
    }
    let bytes = std::fs::read(path).map_err(|source| StatsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes_in(&bytes, unit).map_err(|e| e.in_file(path))
}

/// Parse the content of a histogram file in any supported format.
pub fn parse_bytes(bytes: &[u8]) -> Result<LatencyHistogram, StatsError> {
    parse_bytes_in(bytes, HgrmUnit::Us)
}

/// Like [`parse_bytes`], reading `.hgrm` values in `unit`.
pub fn parse_bytes_in(bytes: &[u8], unit: HgrmUnit) -> Result<LatencyHistogram, StatsError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(StatsError::Empty {
            path: super::error::NO_FILE.into(),
        });
    }
    match sniff(bytes) {
        Some(FileFormat::Hgrm) => read_hgrm_in(&String::from_utf8_lossy(bytes), unit),
        Some(FileFormat::Hlog) => read_hlog(&String::from_utf8_lossy(bytes)),
        Some(FileFormat::BinaryV2) => {
            let hist: Histogram<u64> = Deserializer::new()
                .deserialize(&mut &bytes[..])
                .map_err(|e| StatsError::malformed(0, format!("not a valid V2 histogram: {e}")))?;
            let mut out = LatencyHistogram::new();
            out.add_total(&hist);
            Ok(out)
        }
        None => Err(StatsError::NotAHistogram {
            path: super::error::NO_FILE.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sniffing_recognises_each_format() {
        let mut h = LatencyHistogram::new();
        h.record_us(1_234);
        let mut hgrm = Vec::new();
        crate::stats::write_hgrm(&h, &mut hgrm).unwrap();
        let mut hlog = Vec::new();
        crate::stats::write_hlog(&h, &mut hlog).unwrap();
        let mut bin = Vec::new();
        hdrhistogram::serialization::Serializer::serialize(
            &mut hdrhistogram::serialization::V2DeflateSerializer::new(),
            h.inner(),
            &mut bin,
        )
        .unwrap();
        assert_eq!(sniff(&hgrm), Some(FileFormat::Hgrm));
        assert_eq!(sniff(&hlog), Some(FileFormat::Hlog));
        assert_eq!(sniff(&bin), Some(FileFormat::BinaryV2));
        assert_eq!(sniff(b"hello, world\n"), None);
        assert_eq!(parse_bytes(&bin).unwrap().len(), 1);
    }

    proptest! {
        /// Whatever the bytes, parsing returns Ok or a typed error: no panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_bytes(&bytes);
        }

        /// Same for text that looks almost like our formats.
        #[test]
        fn near_miss_text_never_panics(
            rows in proptest::collection::vec(("-?[0-9]{1,25}(\\.[0-9]{0,4})?", "[0-9.e-]{1,8}", "[0-9]{1,22}"), 0..12),
            log in "(#\\[[A-Za-z ]{0,20}\\]\n)?(Tag=[a-z]{0,3},)?[0-9.]{0,6},[0-9.]{0,6},[0-9.]{0,6},[A-Za-z0-9+/=]{0,40}\n",
        ) {
            let mut text = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
            for (v, p, c) in &rows {
                text.push_str(&format!("{v} {p} {c}\n"));
            }
            let _ = parse_bytes(text.as_bytes());
            let _ = parse_bytes(log.as_bytes());
        }
    }
}
