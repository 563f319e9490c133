//! The CSV.gz file writer: RFC 4180 CSV (header row, fields quoted when
//! needed) through gzip. Nulls are empty fields; `value` is the shortest
//! decimal that reads back as the same f64.

use std::fs::File;
use std::io::BufWriter;

use flate2::Compression;
use flate2::write::GzEncoder;
use gridlink_protocol::VenId;

use super::{COLUMNS, Enrichment, ExportError, FileWriter, IsoTimes, Page};

/// Writes one VEN's rows as CSV.gz.
pub(crate) struct CsvGzWriter {
    csv: csv::Writer<GzEncoder<BufWriter<File>>>,
    ven_id: String,
    iso: IsoTimes,
    /// The enrichment columns as CSV fields (empty for null).
    tail: Vec<String>,
}

impl CsvGzWriter {
    pub(crate) fn new(
        file: File,
        ven_id: &VenId,
        enrichment: Enrichment,
    ) -> Result<Self, ExportError> {
        let gz = GzEncoder::new(BufWriter::new(file), Compression::default());
        let mut csv = csv::Writer::from_writer(gz);
        csv.write_record(COLUMNS)?;
        let number = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let e = enrichment;
        let tail = vec![
            e.site.unwrap_or_default(),
            e.site_meter.unwrap_or_default(),
            e.site_address.unwrap_or_default(),
            number(e.site_latitude),
            number(e.site_longitude),
            e.groups.unwrap_or_default(),
            e.project_id.unwrap_or_default(),
            e.project_name.unwrap_or_default(),
        ];
        Ok(Self {
            csv,
            ven_id: ven_id.to_string(),
            iso: IsoTimes::default(),
            tail,
        })
    }
}

impl FileWriter for CsvGzWriter {
    fn write_page(&mut self, page: &Page) -> Result<(), ExportError> {
        let series = &page.series;
        let mut ts = String::with_capacity(24);
        for &(ts_ms, value) in &page.readings {
            let ts_ms_text = ts_ms.to_string();
            ts.clear();
            self.iso.push(ts_ms, &mut ts);
            let value = value.to_string();
            let head = [
                self.ven_id.as_str(),
                series.meter.as_str(),
                series.quantity.name(),
                series.phase.name(),
                ts_ms_text.as_str(),
                ts.as_str(),
                value.as_str(),
            ];
            self.csv
                .write_record(head.into_iter().chain(self.tail.iter().map(String::as_str)))?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), ExportError> {
        let io = |source| ExportError::Io {
            path: "csv.gz file".into(),
            source,
        };
        let gz = self
            .csv
            .into_inner()
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let buffered = gz.finish().map_err(io)?;
        let file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    }
}
