//! The plugin's output: `-o table|json|yaml`, and columns aligned the way kubectl aligns them.

use std::io::Write;

use serde::Serialize;

use super::KubectlError;

/// Output formats of `status` and `why`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// For people: aligned columns (and, for `why`, sentences).
    #[default]
    Table,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// Prints `value` on stdout in `format`; `table` is written by `write_table`.
pub(super) fn print<T: Serialize>(
    format: OutputFormat,
    value: &T,
    write_table: fn(&T, &mut dyn Write) -> std::io::Result<()>,
) -> Result<(), KubectlError> {
    let mut out = std::io::stdout().lock();
    let written = match format {
        OutputFormat::Table => write_table(value, &mut out),
        OutputFormat::Json => serde_json::to_writer_pretty(&mut out, value)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out)),
        OutputFormat::Yaml => serde_yaml_ng::to_string(value)
            .map_err(std::io::Error::other)
            .and_then(|text| out.write_all(text.as_bytes())),
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| KubectlError::Output(e.to_string()))
}

/// Writes rows as columns separated by three spaces, each as wide as its widest cell
/// (the last column unpadded), like kubectl's tables.
pub(super) fn write_columns(out: &mut dyn Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 3));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// How long ago `time` (RFC 3339) was, the way kubectl prints ages: `45s`, `12m`, `5h`,
/// `3d`; `-` when absent or unreadable.
pub(super) fn age(time: Option<&str>, now: jiff::Timestamp) -> String {
    let Some(then) = time.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "-".to_owned();
    };
    let secs = now.as_second().saturating_sub(then.as_second()).max(0);
    match secs {
        0..120 => format!("{secs}s"),
        120..10_800 => format!("{}m", secs / 60),
        10_800..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_and_lines_not_padded_at_the_end() {
        let rows = vec![
            vec!["NAME".to_owned(), "READY".to_owned(), "X".to_owned()],
            vec!["a-long-name".to_owned(), "True".to_owned(), String::new()],
        ];
        let mut out = Vec::new();
        write_columns(&mut out, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME          READY   X\na-long-name   True\n"
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now: jiff::Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let age_of = |t: &str| age(Some(t), now);
        assert_eq!(age_of("2026-12-02T11:59:15Z"), "45s");
        assert_eq!(age_of("2026-12-02T11:48:00Z"), "12m");
        assert_eq!(age_of("2026-12-02T07:00:00Z"), "5h");
        assert_eq!(age_of("2026-11-29T12:00:00Z"), "3d");
        assert_eq!(age(None, now), "-");
        assert_eq!(age(Some("yesterday"), now), "-");
    }
}
