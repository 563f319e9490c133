//! The Parquet file writer: the `parquet` crate's column writer (no
//! arrow), snappy compression, a row group per [`PAGE_ROWS`] rows.
//!
//! Schema (strings are UTF-8 `BYTE_ARRAY`, `ts_ms` is an `INT64`
//! timestamp in ms, UTC):
//!
//! ```text
//! message reading {
//!   required binary ven_id (STRING); required binary meter (STRING);
//!   required binary quantity (STRING); required binary phase (STRING);
//!   required int64 ts_ms (TIMESTAMP(MILLIS,true)); required binary ts (STRING);
//!   required double value;
//!   optional binary site (STRING); optional binary site_meter (STRING);
//!   optional binary site_address (STRING); optional double site_latitude;
//!   optional double site_longitude; optional binary groups (STRING);
//!   optional binary project_id (STRING); optional binary project_name (STRING);
//! }
//! ```

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use gridlink_protocol::VenId;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::parser::parse_message_type;

use super::{Enrichment, ExportError, FileWriter, GENERATOR, IsoTimes, PAGE_ROWS, Page};

const SCHEMA: &str = "message reading {
    required binary ven_id (STRING);
    required binary meter (STRING);
    required binary quantity (STRING);
    required binary phase (STRING);
    required int64 ts_ms (TIMESTAMP(MILLIS,true));
    required binary ts (STRING);
    required double value;
    optional binary site (STRING);
    optional binary site_meter (STRING);
    optional binary site_address (STRING);
    optional double site_latitude;
    optional double site_longitude;
    optional binary groups (STRING);
    optional binary project_id (STRING);
    optional binary project_name (STRING);
}";

/// Writes one VEN's rows as Parquet.
pub(crate) struct ParquetWriter {
    file: SerializedFileWriter<File>,
    ven_id: ByteArray,
    enrichment: Enrichment,
    iso: IsoTimes,
    meter: Vec<ByteArray>,
    quantity: Vec<ByteArray>,
    phase: Vec<ByteArray>,
    ts_ms: Vec<i64>,
    ts: Vec<ByteArray>,
    value: Vec<f64>,
}

impl ParquetWriter {
    pub(crate) fn new(
        file: File,
        ven_id: &VenId,
        enrichment: Enrichment,
    ) -> Result<Self, ExportError> {
        let schema = Arc::new(parse_message_type(SCHEMA)?);
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(PAGE_ROWS as usize))
            .set_created_by(GENERATOR.to_owned())
            .build();
        let capacity = PAGE_ROWS as usize;
        Ok(Self {
            file: SerializedFileWriter::new(file, schema, Arc::new(properties))?,
            ven_id: text(ven_id.as_str()),
            enrichment,
            iso: IsoTimes::default(),
            meter: Vec::with_capacity(capacity),
            quantity: Vec::with_capacity(capacity),
            phase: Vec::with_capacity(capacity),
            ts_ms: Vec::with_capacity(capacity),
            ts: Vec::with_capacity(capacity),
            value: Vec::with_capacity(capacity),
        })
    }

    /// Writes the buffered rows as one row group.
    fn flush(&mut self) -> Result<(), ExportError> {
        let rows = self.ts_ms.len();
        if rows == 0 {
            return Ok(());
        }
        let e = &self.enrichment;
        let mut group = self.file.next_row_group()?;
        write_bytes(&mut group, &vec![self.ven_id.clone(); rows], None)?;
        write_bytes(&mut group, &self.meter, None)?;
        write_bytes(&mut group, &self.quantity, None)?;
        write_bytes(&mut group, &self.phase, None)?;
        write_i64(&mut group, &self.ts_ms)?;
        write_bytes(&mut group, &self.ts, None)?;
        write_f64(&mut group, &self.value, None)?;
        write_optional_text(&mut group, e.site.as_deref(), rows)?;
        write_optional_text(&mut group, e.site_meter.as_deref(), rows)?;
        write_optional_text(&mut group, e.site_address.as_deref(), rows)?;
        write_optional_f64(&mut group, e.site_latitude, rows)?;
        write_optional_f64(&mut group, e.site_longitude, rows)?;
        write_optional_text(&mut group, e.groups.as_deref(), rows)?;
        write_optional_text(&mut group, e.project_id.as_deref(), rows)?;
        write_optional_text(&mut group, e.project_name.as_deref(), rows)?;
        group.close()?;
        self.meter.clear();
        self.quantity.clear();
        self.phase.clear();
        self.ts_ms.clear();
        self.ts.clear();
        self.value.clear();
        Ok(())
    }
}

impl FileWriter for ParquetWriter {
    fn write_page(&mut self, page: &Page) -> Result<(), ExportError> {
        let meter = text(&page.series.meter);
        let quantity = text(page.series.quantity.name());
        let phase = text(page.series.phase.name());
        // Every row group is cut at PAGE_ROWS rows; the ISO times of a
        // chunk share one buffer, which the column values slice.
        let mut rest = page.readings.as_slice();
        while !rest.is_empty() {
            // At least 1: the buffer is flushed when it reaches PAGE_ROWS.
            let room = (PAGE_ROWS as usize).saturating_sub(self.ts_ms.len()).max(1);
            let (chunk, tail) = rest.split_at(room.min(rest.len()));
            rest = tail;
            let mut times = String::with_capacity(chunk.len() * 24);
            let mut ends = Vec::with_capacity(chunk.len());
            for &(ts_ms, _) in chunk {
                self.iso.push(ts_ms, &mut times);
                ends.push(times.len());
            }
            let times = Bytes::from(times.into_bytes());
            let mut start = 0;
            for (&(ts_ms, value), end) in chunk.iter().zip(ends) {
                self.meter.push(meter.clone());
                self.quantity.push(quantity.clone());
                self.phase.push(phase.clone());
                self.ts_ms.push(ts_ms);
                self.ts.push(ByteArray::from(times.slice(start..end)));
                self.value.push(value);
                start = end;
            }
            if self.ts_ms.len() >= PAGE_ROWS as usize {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), ExportError> {
        self.flush()?;
        let file = self.file.into_inner()?;
        file.sync_all().map_err(|source| ExportError::Io {
            path: "parquet file".into(),
            source,
        })
    }
}

fn text(s: &str) -> ByteArray {
    ByteArray::from(Bytes::copy_from_slice(s.as_bytes()))
}

fn missing_column() -> ExportError {
    ExportError::Writer("the Parquet schema has fewer columns than written".into())
}

fn write_bytes(
    group: &mut SerializedRowGroupWriter<'_, File>,
    values: &[ByteArray],
    levels: Option<&[i16]>,
) -> Result<(), ExportError> {
    let mut column = group.next_column()?.ok_or_else(missing_column)?;
    column
        .typed::<ByteArrayType>()
        .write_batch(values, levels, None)?;
    column.close()?;
    Ok(())
}

fn write_i64(
    group: &mut SerializedRowGroupWriter<'_, File>,
    values: &[i64],
) -> Result<(), ExportError> {
    let mut column = group.next_column()?.ok_or_else(missing_column)?;
    column
        .typed::<Int64Type>()
        .write_batch(values, None, None)?;
    column.close()?;
    Ok(())
}

fn write_f64(
    group: &mut SerializedRowGroupWriter<'_, File>,
    values: &[f64],
    levels: Option<&[i16]>,
) -> Result<(), ExportError> {
    let mut column = group.next_column()?.ok_or_else(missing_column)?;
    column
        .typed::<DoubleType>()
        .write_batch(values, levels, None)?;
    column.close()?;
    Ok(())
}

/// A column that holds `value` (or null) in each of `rows` rows.
fn write_optional_text(
    group: &mut SerializedRowGroupWriter<'_, File>,
    value: Option<&str>,
    rows: usize,
) -> Result<(), ExportError> {
    match value {
        Some(v) => write_bytes(group, &vec![text(v); rows], Some(&vec![1; rows])),
        None => write_bytes(group, &[], Some(&vec![0; rows])),
    }
}

fn write_optional_f64(
    group: &mut SerializedRowGroupWriter<'_, File>,
    value: Option<f64>,
    rows: usize,
) -> Result<(), ExportError> {
    match value {
        Some(v) => write_f64(group, &vec![v; rows], Some(&vec![1; rows])),
        None => write_f64(group, &[], Some(&vec![0; rows])),
    }
}
