//! Rendering SQL results for the terminal, in the style of ksqlDB's CLI: tables with
//! `+----+` borders and `|`-separated cells (NULL for null, compact JSON for arrays and
//! objects, control characters escaped so a row stays on one line), widths measured in
//! terminal columns (CJK and emoji count two), and a [`StreamTable`] that prints a header
//! once and then each row of a query as it arrives.

use serde_json::Value;
use unicode_width::UnicodeWidthStr;

/// Narrowest column of a streamed query (its rows are not known when the header prints).
const STREAM_MIN_WIDTH: usize = 10;

/// How a value shows in a cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".to_string(),
        Value::String(s) => escape_controls(s),
        other => other.to_string(),
    }
}

/// `\n`, `\t`, `\r` and other control characters as escapes.
fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Display width in terminal columns.
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

fn border(widths: &[usize]) -> String {
    let mut line = String::from("+");
    for w in widths {
        line.extend(std::iter::repeat_n('-', w + 2));
        line.push('+');
    }
    line.push('\n');
    line
}

fn line<S: AsRef<str>>(cells: &[S], widths: &[usize]) -> String {
    let mut line = String::from("|");
    for (i, w) in widths.iter().enumerate() {
        let text = cells.get(i).map_or("", |c| c.as_ref());
        line.push(' ');
        line.push_str(text);
        line.extend(std::iter::repeat_n(' ', w.saturating_sub(width(text)) + 1));
        line.push('|');
    }
    line.push('\n');
    line
}

/// A whole table: border, header, border, rows, border. Rows shorter than the header get
/// empty cells; longer ones widen the table (with unnamed columns).
pub fn table(columns: &[String], rows: &[Vec<Value>]) -> String {
    let count = rows.iter().map(Vec::len).fold(columns.len(), usize::max);
    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(cell).collect()).collect();
    let mut widths: Vec<usize> = (0..count)
        .map(|i| columns.get(i).map_or(0, |c| width(c)))
        .collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(c));
        }
    }
    let mut out = border(&widths);
    out.push_str(&line(columns, &widths));
    out.push_str(&border(&widths));
    for row in &cells {
        out.push_str(&line(row, &widths));
    }
    out.push_str(&border(&widths));
    out
}

/// One result of `POST /v1/sql` as text: its `message` on a line, then its table when it has
/// `columns`. A result with neither shows its `type`.
pub fn result(r: &Value) -> String {
    let mut out = String::new();
    if let Some(m) = r.get("message").and_then(Value::as_str)
        && !m.is_empty()
    {
        out.push_str(m);
        out.push('\n');
    }
    if let Some(columns) = r.get("columns").and_then(Value::as_array) {
        let columns: Vec<String> = columns
            .iter()
            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
            .collect();
        let rows: Vec<Vec<Value>> = r
            .get("rows")
            .and_then(Value::as_array)
            .map(|rows| rows.iter().map(row_values).collect())
            .unwrap_or_default();
        out.push_str(&table(&columns, &rows));
    } else if out.is_empty()
        && let Some(kind) = r.get("type").and_then(Value::as_str)
    {
        out.push_str(kind);
        out.push('\n');
    }
    out
}

/// A row's cells: the elements of an array, or a lone value as one cell.
pub fn row_values(row: &Value) -> Vec<Value> {
    match row {
        Value::Array(cells) => cells.clone(),
        other => vec![other.clone()],
    }
}

/// Rows of a query printed as they arrive: column widths are fixed from the header (at least
/// [`STREAM_MIN_WIDTH`]) and grow when a wider value comes (later rows use the new width).
#[derive(Debug, Clone)]
pub struct StreamTable {
    widths: Vec<usize>,
    rows: u64,
}

impl StreamTable {
    pub fn new(columns: &[String]) -> Self {
        StreamTable {
            widths: columns
                .iter()
                .map(|c| width(c).max(STREAM_MIN_WIDTH))
                .collect(),
            rows: 0,
        }
    }

    /// Border, header, border.
    pub fn header(&self, columns: &[String]) -> String {
        let mut out = border(&self.widths);
        out.push_str(&line(columns, &self.widths));
        out.push_str(&border(&self.widths));
        out
    }

    /// One row's line.
    pub fn row(&mut self, values: &[Value]) -> String {
        let cells: Vec<String> = values.iter().map(cell).collect();
        if cells.len() > self.widths.len() {
            self.widths.resize(cells.len(), 0);
        }
        for (i, c) in cells.iter().enumerate() {
            self.widths[i] = self.widths[i].max(width(c));
        }
        self.rows += 1;
        line(&cells, &self.widths)
    }

    /// The closing border.
    pub fn footer(&self) -> String {
        border(&self.widths)
    }

    /// Rows printed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cells_show_nulls_json_and_escapes() {
        assert_eq!(cell(&json!(null)), "NULL");
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(cell(&json!(1.5)), "1.5");
        assert_eq!(cell(&json!(-3)), "-3");
        assert_eq!(cell(&json!(true)), "true");
        assert_eq!(cell(&json!([1, "a", null])), r#"[1,"a",null]"#);
        assert_eq!(cell(&json!({"k": {"n": [1]}})), r#"{"k":{"n":[1]}}"#);
        assert_eq!(cell(&json!("a\nb\tc\u{1}")), "a\\nb\\tc\\u{1}");
        // A string "null" is not NULL.
        assert_eq!(cell(&json!("null")), "null");
    }

    #[test]
    fn tables_align_with_borders() {
        let t = table(
            &strings(&["ID", "NAME"]),
            &[vec![json!(1), json!("x")], vec![json!(22), json!(null)]],
        );
        assert_eq!(
            t,
            "+----+------+\n\
             | ID | NAME |\n\
             +----+------+\n\
             | 1  | x    |\n\
             | 22 | NULL |\n\
             +----+------+\n"
        );
    }

    #[test]
    fn empty_and_ragged_tables() {
        assert_eq!(table(&strings(&["A"]), &[]), "+---+\n| A |\n+---+\n+---+\n");
        let t = table(
            &strings(&["A", "B"]),
            &[vec![json!(1)], vec![json!(1), json!(2), json!("extra")]],
        );
        assert_eq!(
            t,
            "+---+---+-------+\n\
             | A | B |       |\n\
             +---+---+-------+\n\
             | 1 |   |       |\n\
             | 1 | 2 | extra |\n\
             +---+---+-------+\n"
        );
    }

    #[test]
    fn wide_characters_count_double() {
        assert_eq!(width("日本"), 4);
        assert_eq!(width("ü"), 1);
        let t = table(
            &strings(&["K"]),
            &[vec![json!("日本")], vec![json!("abcde")], vec![json!("ü")]],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[3], "| 日本  |");
        assert_eq!(lines[4], "| abcde |");
        assert_eq!(lines[5], "| ü     |");
        // Every line is as wide on screen.
        assert!(lines.iter().all(|l| width(l) == width(lines[0])), "{t}");
    }

    #[test]
    fn nested_values_render_as_json() {
        let t = table(
            &strings(&["V"]),
            &[vec![json!({"a": [1, 2], "b": null})], vec![json!([])]],
        );
        assert!(t.contains(r#"| {"a":[1,2],"b":null} |"#), "{t}");
        assert!(t.contains("| []                   |"), "{t}");
    }

    #[test]
    fn results_show_messages_and_tables() {
        let r = json!({"statement": "CREATE STREAM s ...;", "type": "stream_created",
                       "message": "Stream S created"});
        assert_eq!(result(&r), "Stream S created\n");
        let r = json!({"statement": "SHOW STREAMS;", "type": "streams",
                       "columns": ["NAME", "TOPIC"], "rows": [["S", "t"]]});
        assert_eq!(
            result(&r),
            "+------+-------+\n\
             | NAME | TOPIC |\n\
             +------+-------+\n\
             | S    | t     |\n\
             +------+-------+\n"
        );
        let r = json!({"type": "stream_dropped"});
        assert_eq!(result(&r), "stream_dropped\n");
        let r = json!({"message": "2 rows", "columns": ["A"], "rows": [[1], [2]]});
        assert!(result(&r).starts_with("2 rows\n+---+\n"));
        // A row that is not an array is one cell.
        let r = json!({"columns": ["A"], "rows": [5]});
        assert!(result(&r).contains("| 5 |"));
        assert_eq!(result(&json!({})), "");
    }

    #[test]
    fn streamed_rows_use_header_widths_and_grow() {
        let columns = strings(&["ID", "A_LONG_COLUMN_NAME"]);
        let mut s = StreamTable::new(&columns);
        assert_eq!(
            s.header(&columns),
            "+------------+--------------------+\n\
             | ID         | A_LONG_COLUMN_NAME |\n\
             +------------+--------------------+\n"
        );
        assert_eq!(
            s.row(&[json!(1), json!(null)]),
            "| 1          | NULL               |\n"
        );
        assert_eq!(
            s.row(&[json!("a much longer id"), json!("x")]),
            "| a much longer id | x                  |\n"
        );
        assert_eq!(
            s.row(&[json!(2), json!("y")]),
            "| 2                | y                  |\n"
        );
        assert_eq!(s.rows(), 3);
        assert_eq!(s.footer(), "+------------------+--------------------+\n");
    }
}
