//! The archive's tables: their Arrow schemas, record batches from rows, Parquet files written
//! whole (a temporary file renamed into place, so a reader or a crash never sees half a file).

use super::ArchiveError;
use crate::time::Ts;
use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use std::path::Path;
use std::sync::Arc;

/// One archived table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Readings,
    Tickets,
    Warnings,
    Transitions,
    Sites,
}

impl Table {
    pub const ALL: [Table; 5] = [
        Table::Readings,
        Table::Tickets,
        Table::Warnings,
        Table::Transitions,
        Table::Sites,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Readings => "readings",
            Table::Tickets => "tickets",
            Table::Warnings => "warnings",
            Table::Transitions => "transitions",
            Table::Sites => "sites",
        }
    }

    /// Whether its files are in day folders (`day=YYYY-MM-DD`); the site list is one file.
    pub fn by_day(self) -> bool {
        self != Table::Sites
    }

    pub fn schema(self) -> SchemaRef {
        let text = |n: &str| Field::new(n, DataType::Utf8, false);
        let opt_text = |n: &str| Field::new(n, DataType::Utf8, true);
        let time = |n: &str| {
            Field::new(
                n,
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            )
        };
        let opt_time = |n: &str| {
            Field::new(
                n,
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            )
        };
        let int = |n: &str| Field::new(n, DataType::Int64, false);
        let fields = match self {
            Table::Readings => vec![
                text("site"),
                text("device"),
                text("metric"),
                Field::new("value", DataType::Float64, false),
                time("ts"),
                time("arrival"),
                text("source"),
            ],
            Table::Tickets => vec![
                text("number"),
                opt_text("channel"),
                opt_text("category"),
                text("concern"),
                opt_time("received_at"),
                opt_text("site"),
                opt_text("matched_by"),
                opt_text("credit_code"),
                opt_text("enterprise"),
                opt_text("industry"),
                opt_text("department"),
                opt_text("address"),
                opt_text("content"),
                opt_text("status"),
                opt_text("result"),
                time("created_at"),
                time("updated_at"),
            ],
            Table::Warnings => vec![
                text("id"),
                text("rule"),
                text("site"),
                text("site_kind"),
                text("subject"),
                text("level"),
                text("status"),
                int("seq"),
                text("title"),
                text("message"),
                text("departments"),
                time("raised_at"),
                time("stored_at"),
                time("updated_at"),
                opt_time("ack_due"),
                opt_time("handle_due"),
                opt_time("acked_at"),
                opt_time("handled_at"),
                opt_time("closed_at"),
                opt_time("cleared_at"),
                int("overdue_step"),
                opt_text("supervisor"),
            ],
            Table::Transitions => vec![
                text("warning_id"),
                int("seq"),
                text("kind"),
                text("level"),
                text("rule"),
                text("site"),
                time("at"),
                time("stored_at"),
            ],
            Table::Sites => vec![
                text("id"),
                text("name"),
                text("kind"),
                text("departments"),
                Field::new("lat", DataType::Float64, false),
                Field::new("lon", DataType::Float64, false),
                opt_text("address"),
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

/// Column builders for a table's rows, in schema order.
pub enum Col {
    Text(StringBuilder),
    Float(Float64Builder),
    Int(Int64Builder),
    Time(TimestampMillisecondBuilder),
}

impl Col {
    pub fn text(&mut self, v: Option<&str>) {
        if let Col::Text(b) = self {
            b.append_option(v)
        }
    }
    pub fn float(&mut self, v: f64) {
        if let Col::Float(b) = self {
            b.append_value(v)
        }
    }
    pub fn int(&mut self, v: i64) {
        if let Col::Int(b) = self {
            b.append_value(v)
        }
    }
    pub fn time(&mut self, v: Option<Ts>) {
        if let Col::Time(b) = self {
            b.append_option(v)
        }
    }
    fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Text(b) => Arc::new(b.finish()),
            Col::Float(b) => Arc::new(b.finish()),
            Col::Int(b) => Arc::new(b.finish()),
            Col::Time(b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }
}

/// Builds one record batch of a table.
pub struct Rows {
    pub schema: SchemaRef,
    pub cols: Vec<Col>,
}

impl Rows {
    pub fn new(table: Table) -> Rows {
        let schema = table.schema();
        let cols = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => Col::Text(StringBuilder::new()),
                DataType::Float64 => Col::Float(Float64Builder::new()),
                DataType::Int64 => Col::Int(Int64Builder::new()),
                _ => Col::Time(TimestampMillisecondBuilder::new()),
            })
            .collect();
        Rows { schema, cols }
    }

    /// Rows appended so far (every column has as many).
    pub fn len(&self) -> usize {
        match self.cols.first() {
            Some(Col::Text(b)) => b.len(),
            Some(Col::Float(b)) => b.len(),
            Some(Col::Int(b)) => b.len(),
            Some(Col::Time(b)) => b.len(),
            None => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(mut self) -> Result<RecordBatch, ArchiveError> {
        let arrays = self.cols.iter_mut().map(Col::finish).collect();
        Ok(RecordBatch::try_new(self.schema, arrays)?)
    }
}

/// Write `batch` as the Parquet file `path`, replacing it whole.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), ArchiveError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ArchiveError::io(dir, e))?;
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| ArchiveError::io(&tmp, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
    w.write(batch)?;
    let file = w.into_inner()?;
    file.sync_all().map_err(|e| ArchiveError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ArchiveError::io(path, e))?;
    Ok(())
}
