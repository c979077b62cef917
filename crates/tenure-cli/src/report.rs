//! Rendering: the reports of tenure-report, and SQL query results.

pub use tenure_report::*;

/// Query results as a table, CSV or JSON rows.
pub fn batches(
    batches: &[tenure_analytics::arrow::record_batch::RecordBatch],
    format: OutFormat,
) -> anyhow::Result<String> {
    use tenure_analytics::arrow;
    Ok(match format {
        OutFormat::Table => format!("{}\n", arrow::util::pretty::pretty_format_batches(batches)?),
        OutFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::Writer::new(&mut buf);
                for b in batches {
                    w.write(b)?;
                }
            }
            String::from_utf8(buf)?
        }
        OutFormat::Json => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::json::ArrayWriter::new(&mut buf);
                for b in batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            if buf.is_empty() {
                buf.extend_from_slice(b"[]");
            }
            String::from_utf8(buf)? + "\n"
        }
    })
}
