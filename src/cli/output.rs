//! Terminal output helpers: aligned plain-text tables and treating a closed stdout
//! (`weir consume t | head`) as a normal way to stop.

use std::io;

/// Renders rows under a header as columns separated by two spaces, each as wide as its
/// widest cell. The last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Renders `label: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(&format!(
            "{:<width$}  {v}\n",
            format!("{k}:"),
            width = width + 1
        ));
    }
    out
}

/// Whether an output error means the reader went away (e.g. `| head`).
pub fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Writes `text` to stdout; a closed pipe is not an error.
pub fn print(text: &str) -> io::Result<()> {
    use io::Write;
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["NAME", "PARTITIONS", "COMPACTED"],
            &[
                vec!["a".into(), "3".into(), "false".into()],
                vec!["longer-name".into(), "12".into(), "true".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME         PARTITIONS  COMPACTED\n\
             a            3           false\n\
             longer-name  12          true\n"
        );
    }

    #[test]
    fn fields_align_values() {
        let f = fields(&[("name", "t".into()), ("partitions", "3".into())]);
        assert_eq!(f, "name:        t\npartitions:  3\n");
    }
}
