//! Splitting SQL text into statements: `;` ends a statement unless it is inside a quoted
//! string (`'…'`, `"…"` or `` `…` ``, a doubled quote staying inside) or a comment (`-- …` to
//! the end of the line, `/* … */`). Comments are blanked out (each character becomes a space,
//! newlines stay) so that a line and column in a statement's text are the same line and column
//! in the script, counted from where the statement starts. Also recognises the client-side
//! `SET 'name'='value';` and `UNSET 'name';` and a statement's first keyword.

/// One complete statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement with comments blanked out, from its first character to its `;`.
    pub text: String,
    /// Line of its first character in the split text (1-based).
    pub line: usize,
    /// Column (in characters) of its first character on that line (1-based).
    pub column: usize,
}

impl Statement {
    /// Where `line`/`column` (1-based, relative to this statement's text, as a server reports
    /// them) are in the text this statement was split from.
    pub fn position_in_source(&self, line: u64, column: u64) -> (u64, u64) {
        let line = line.max(1);
        let script_line = self.line as u64 + line - 1;
        let script_column = if line == 1 {
            self.column as u64 + column.max(1) - 1
        } else {
            column
        };
        (script_line, script_column)
    }
}

/// What is open at the end of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// A quoted string or identifier, with its quote character.
    Quote(char),
    /// A `/* … */` comment.
    Comment,
}

/// The statements of a text, and what follows the last `;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub statements: Vec<Statement>,
    /// Text after the last complete statement that is more than whitespace and comments
    /// (an unterminated statement), comments blanked; `None` if there is none.
    pub rest: Option<Statement>,
    /// Byte offset in the input where the unterminated part begins (the input's length when
    /// every statement is complete).
    pub rest_offset: usize,
    /// A quote or comment still open at the end of the text.
    pub open: Option<Open>,
}

impl Split {
    /// Whether the text ends cleanly: no unterminated statement, quote or comment.
    pub fn is_complete(&self) -> bool {
        self.rest.is_none() && self.open.is_none()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    Quote(char),
    LineComment,
    BlockComment,
}

/// Splits `input` into statements (see the module doc).
pub fn split(input: &str) -> Split {
    let mut statements = Vec::new();
    // The current statement: its text (comments blanked) and where it starts.
    let mut current = String::new();
    let mut start: Option<(usize, usize)> = None;
    // Byte offset where the current (unfinished) statement's raw text begins.
    let mut current_offset = 0;
    let mut state = State::Normal;
    let (mut line, mut column) = (1usize, 1usize);
    let mut chars = input.char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let here = (line, column);
        // How `c` goes into the statement's text.
        let mut keep = c;
        // A second character consumed with `c` (of `/*` or `*/`), blanked.
        let mut pair = false;
        let mut ends_statement = false;
        match state {
            State::Normal => match c {
                '\'' | '"' | '`' => state = State::Quote(c),
                '-' if next == Some('-') => {
                    state = State::LineComment;
                    keep = ' ';
                }
                '/' if next == Some('*') => {
                    state = State::BlockComment;
                    keep = ' ';
                    // Consume the `*` too, so that `/*/` does not close the comment.
                    pair = true;
                }
                ';' => ends_statement = true,
                _ => {}
            },
            State::Quote(q) => {
                // A doubled quote (`'it''s'`) closes and reopens: the same state either way.
                if c == q {
                    state = State::Normal;
                }
            }
            State::LineComment => {
                if c == '\n' {
                    state = State::Normal;
                } else {
                    keep = ' ';
                }
            }
            State::BlockComment => {
                if c == '*' && next == Some('/') {
                    state = State::Normal;
                    pair = true;
                }
                if c != '\n' {
                    keep = ' ';
                }
            }
        }
        if start.is_none() && !keep.is_whitespace() {
            start = Some(here);
        }
        if start.is_some() {
            current.push(keep);
        }
        if pair {
            chars.next();
            column += 1;
            if start.is_some() {
                current.push(' ');
            }
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
        if ends_statement {
            if let Some((line, column)) = start.take() {
                // A lone `;` makes no statement.
                if current.trim() != ";" {
                    statements.push(Statement {
                        text: current.trim_end().to_string(),
                        line,
                        column,
                    });
                }
            }
            current.clear();
            current_offset = offset + 1;
        }
    }
    let rest = start.map(|(line, column)| Statement {
        text: current.trim_end().to_string(),
        line,
        column,
    });
    let rest = rest.filter(|r| !r.text.trim().is_empty());
    let open = match state {
        State::Quote(q) => Some(Open::Quote(q)),
        State::BlockComment => Some(Open::Comment),
        State::Normal | State::LineComment => None,
    };
    Split {
        statements,
        rest_offset: if rest.is_some() || open.is_some() {
            current_offset
        } else {
            input.len()
        },
        rest,
        open,
    }
}

/// The first keyword of a statement, upper-cased (`SELECT`, `SET`, …); empty if it does not
/// start with a letter. Leading parentheses are skipped (`(SELECT …)`).
pub fn first_keyword(text: &str) -> String {
    text.trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<String>()
        .to_ascii_uppercase()
}

/// A statement the client handles itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// `SET 'name' = 'value';`: a session property.
    Set(String, String),
    /// `UNSET 'name';`.
    Unset(String),
}

/// Parses `SET 'name'='value';` / `UNSET 'name';`. `None` if the statement is neither;
/// `Some(Err)` if it is one of them but malformed.
pub fn local_command(text: &str) -> Option<Result<Local, String>> {
    let keyword = first_keyword(text);
    let body = text.trim_start();
    let body = body[keyword.len().min(body.len())..].trim();
    let body = body.strip_suffix(';').unwrap_or(body).trim();
    match keyword.as_str() {
        "SET" => Some(parse_set(body).ok_or_else(|| {
            "expected SET 'name'='value'; (name and value in single quotes)".to_string()
        })),
        "UNSET" => Some(
            parse_quoted(body)
                .filter(|(_, rest)| rest.trim().is_empty())
                .map(|(name, _)| Local::Unset(name))
                .ok_or_else(|| "expected UNSET 'name'; (name in single quotes)".to_string()),
        ),
        _ => None,
    }
}

fn parse_set(body: &str) -> Option<Local> {
    let (name, rest) = parse_quoted(body)?;
    let rest = rest.trim_start().strip_prefix('=')?;
    let (value, rest) = parse_quoted(rest.trim_start())?;
    if !rest.trim().is_empty() || name.is_empty() {
        return None;
    }
    Some(Local::Set(name, value))
}

/// A `'…'` string at the start of `s` (`''` inside is one quote) and what follows it.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let s = s.strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().map(|&(_, n)| n) == Some('\'') {
                out.push('\'');
                chars.next();
                continue;
            }
            return Some((out, &s[i + 1..]));
        }
        out.push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(input: &str) -> Vec<String> {
        split(input)
            .statements
            .into_iter()
            .map(|s| s.text)
            .collect()
    }

    #[test]
    fn splits_on_semicolons() {
        assert_eq!(
            texts("SHOW STREAMS; SHOW TABLES;"),
            ["SHOW STREAMS;", "SHOW TABLES;"]
        );
        assert_eq!(texts(";;  ; SHOW STREAMS;;"), ["SHOW STREAMS;"]);
        assert!(split("").is_complete());
        assert!(split("  \n ").is_complete());
        assert_eq!(split("  \n ").rest_offset, 4);
    }

    #[test]
    fn semicolons_in_quotes_do_not_split() {
        assert_eq!(
            texts("INSERT INTO s VALUES ('a;b', \"c;d\", `e;f`); SELECT 1;"),
            ["INSERT INTO s VALUES ('a;b', \"c;d\", `e;f`);", "SELECT 1;"]
        );
        // A doubled quote stays inside the string.
        assert_eq!(
            texts("SELECT 'it''s; ok' FROM t; X;"),
            ["SELECT 'it''s; ok' FROM t;", "X;"]
        );
        // Comment markers inside quotes are text.
        assert_eq!(
            texts("SELECT '--;', '/*;*/' FROM t;"),
            ["SELECT '--;', '/*;*/' FROM t;"]
        );
        // Other quotes inside quotes are text.
        assert_eq!(
            texts(r#"SELECT "a'b;" FROM t;"#),
            [r#"SELECT "a'b;" FROM t;"#]
        );
    }

    #[test]
    fn comments_are_blanked_and_do_not_split() {
        let s = split("-- a comment; still\nSHOW /* ; */ STREAMS; -- trailing ;\n");
        assert_eq!(s.statements.len(), 1);
        assert_eq!(s.statements[0].text, "SHOW         STREAMS;");
        assert_eq!((s.statements[0].line, s.statements[0].column), (2, 1));
        assert!(s.is_complete(), "{s:?}");
        // Multi-line block comments keep their newlines.
        let s = split("SELECT /* one\ntwo */ x FROM t;");
        assert_eq!(s.statements[0].text, "SELECT       \n       x FROM t;");
        // `/*/` does not close a comment.
        let s = split("/*/ ; */ A;");
        assert_eq!(texts("/*/ ; */ A;"), ["A;"]);
        assert!(s.is_complete());
        // `-` and `/` alone are operators.
        assert_eq!(
            texts("SELECT a-b, c/d FROM t;"),
            ["SELECT a-b, c/d FROM t;"]
        );
    }

    #[test]
    fn multi_line_statements_keep_their_positions() {
        let input = "SHOW STREAMS;\n\nCREATE STREAM s\n  WITH (kafka_topic='t');\n   DESCRIBE s;";
        let s = split(input);
        let pos: Vec<(usize, usize)> = s.statements.iter().map(|s| (s.line, s.column)).collect();
        assert_eq!(pos, [(1, 1), (3, 1), (5, 4)]);
        assert_eq!(
            s.statements[1].text,
            "CREATE STREAM s\n  WITH (kafka_topic='t');"
        );
        // A server's line 2, column 9 of the CREATE is line 4, column 9 of the script; line 1,
        // column 10 of the DESCRIBE is column 13 of line 5.
        assert_eq!(s.statements[1].position_in_source(2, 9), (4, 9));
        assert_eq!(s.statements[2].position_in_source(1, 10), (5, 13));
        // Columns count characters, not bytes.
        let s = split("SELECT 'é'; SELECT 2;");
        assert_eq!((s.statements[1].line, s.statements[1].column), (1, 13));
    }

    #[test]
    fn unterminated_text_is_reported() {
        let input = "SHOW STREAMS; SELECT *\nFROM t";
        let s = split(input);
        assert_eq!(s.statements.len(), 1);
        let rest = s.rest.as_ref().unwrap();
        assert_eq!(rest.text, "SELECT *\nFROM t");
        assert_eq!((rest.line, rest.column), (1, 15));
        assert_eq!(&input[s.rest_offset..], " SELECT *\nFROM t");
        assert!(!s.is_complete());

        let s = split("SELECT 'abc;");
        assert_eq!(s.open, Some(Open::Quote('\'')));
        assert_eq!(s.rest_offset, 0);
        let s = split("A; /* open ;");
        assert_eq!(s.open, Some(Open::Comment));
        assert_eq!(s.rest, None);
        assert_eq!(s.rest_offset, 2);
        // A line comment at the end is complete.
        assert!(split("A; -- done").is_complete());
    }

    #[test]
    fn unicode_text_is_kept() {
        assert_eq!(
            texts("SELECT '日本;語', \"ünï\" FROM t; SELECT '🦀';"),
            ["SELECT '日本;語', \"ünï\" FROM t;", "SELECT '🦀';"]
        );
    }

    #[test]
    fn first_keywords() {
        assert_eq!(first_keyword("  select * from t;"), "SELECT");
        assert_eq!(first_keyword("(SELECT 1);"), "SELECT");
        assert_eq!(first_keyword("Show Streams;"), "SHOW");
        assert_eq!(first_keyword("SELECTED;"), "SELECTED");
        assert_eq!(first_keyword("'x';"), "");
    }

    #[test]
    fn set_and_unset() {
        assert_eq!(
            local_command("SET 'auto.offset.reset'='earliest';"),
            Some(Ok(Local::Set(
                "auto.offset.reset".into(),
                "earliest".into()
            )))
        );
        assert_eq!(
            local_command("set  'k'  =  'it''s' ;"),
            Some(Ok(Local::Set("k".into(), "it's".into())))
        );
        assert_eq!(
            local_command("UNSET 'k';"),
            Some(Ok(Local::Unset("k".into())))
        );
        assert!(matches!(local_command("SET k=v;"), Some(Err(_))));
        assert!(matches!(local_command("SET 'k'='v' x;"), Some(Err(_))));
        assert!(matches!(local_command("SET 'k';"), Some(Err(_))));
        assert!(matches!(local_command("UNSET 'k' 'j';"), Some(Err(_))));
        assert_eq!(local_command("SELECT 1;"), None);
        assert_eq!(local_command("SETTINGS;"), None);
    }
}
