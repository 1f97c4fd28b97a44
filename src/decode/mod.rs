//! Decoders: bytes in, readings out, no I/O. Every failure names a [`RejectReason`] and a detail
//! for the dead-letter record; the caller counts it and carries on.
//!
//! - [`csv`]: narrow CSV `ts,site,device,metric,value[,unit]` (header optional)
//! - [`hj212`]: HJ 212-2017 uploads (pollutant codes, data flags) into readings
//! - [`onvif`]: ONVIF metadata documents (object counts, event notifications) and edge AI boxes'
//!   JSON camera events
//! - [`json`]: JSON readings, single or multi-value (MQTT payloads and JSON lines)
//! - [`wide`]: wide CSV files through a column mapping (one row, many metrics)

pub mod csv;
pub mod hj212;
pub mod json;
pub mod onvif;
pub mod wide;

use crate::event::RejectReason;

/// Why a record could not be decoded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct DecodeError {
    pub reason: RejectReason,
    pub detail: String,
}

impl DecodeError {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> DecodeError {
        DecodeError {
            reason,
            detail: detail.into(),
        }
    }
}

/// One CSV record, quotes and all, through the `csv` crate.
pub(crate) fn csv_record(line: &[u8]) -> Result<::csv::StringRecord, DecodeError> {
    let mut rdr = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line);
    let mut rec = ::csv::StringRecord::new();
    match rdr.read_record(&mut rec) {
        Ok(true) => Ok(rec),
        Ok(false) => Err(DecodeError::new(RejectReason::Malformed, "empty line")),
        Err(e) => Err(DecodeError::new(RejectReason::Malformed, e.to_string())),
    }
}

/// Input formats of recorded readings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `ts,site,device,metric,value[,unit]`, with or without a header
    Csv,
    /// one JSON reading per line (an MQTT payload plus `site` and `device`)
    Jsonl,
    /// a wide CSV read through a column mapping (`--mapping`)
    Wide,
}

impl Format {
    /// Guess from a file name.
    pub fn from_path(p: &std::path::Path) -> Option<Format> {
        match p.extension()?.to_str()? {
            "csv" | "tsv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            _ => None,
        }
    }
}
