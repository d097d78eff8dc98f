//! Statement parsing: splits a script into statements, parses the ksqlDB statement shapes
//! (`CREATE STREAM ... WITH (...)`, `SHOW`, `DESCRIBE`, `TERMINATE`, `DROP ... DELETE TOPIC`,
//! `CREATE FUNCTION`) with sqlparser's `Parser` primitives, pulls the clauses sqlparser lacks
//! (`WINDOW TUMBLING|HOPPING|SESSION (...)`, `EMIT CHANGES|FINAL`) out of SELECTs, and hands
//! the rest of every SELECT to sqlparser's own query parser. Nothing here knows the catalog.

use sqlparser::ast::Ident;
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use super::ast::{
    ColumnDef, DEFAULT_GRACE_MS, Emit, Parsed, Properties, SelectStmt, ShowWhat, SourceKind,
    Statement, WindowKind, WindowSpec,
};
use super::error::{Position, SqlError};
use super::limits::{self, MAX_STATEMENTS, MAX_TYPE_DEPTH};
use super::types::SqlType;

const DIALECT: GenericDialect = GenericDialect {};
/// Most hopping windows one record may fall in (SIZE / ADVANCE BY).
pub const MAX_HOPS: i64 = 1000;

/// A column or object name as written: unquoted names are upper-cased (as ksqlDB does),
/// quoted ones kept.
pub fn ident_name(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_uppercase()
    }
}

/// Parses every statement of `sql` (separated by `;`). The text, the statements and each
/// statement's tokens are checked against `limits` before anything is parsed; the parse
/// recurses (sqlparser), so call this on the SQL thread (`limits::on_sql_stack`).
pub fn parse(sql: &str) -> Result<Vec<Parsed>, SqlError> {
    limits::check_text(sql)?;
    let tokens = Tokenizer::new(&DIALECT, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::syntax(e.message.clone()).at(Position::of(e.location)))?;
    let statements = split(tokens);
    if statements.len() > MAX_STATEMENTS {
        return Err(limits::too_complex(format!(
            "{} statements in one request; at most {MAX_STATEMENTS} are accepted",
            statements.len()
        )));
    }
    for stmt in &statements {
        limits::check_tokens(stmt)?;
    }
    let mut out = Vec::new();
    let mut locator = Locator::new(sql);
    for stmt in statements {
        let text = locator.text_of(&stmt);
        out.push(Parsed {
            statement: parse_one(stmt, &text)?,
            text,
        });
    }
    if out.is_empty() {
        return Err(SqlError::syntax("no statement to run"));
    }
    Ok(out)
}

fn is_blank(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_) | Token::EOF)
}

/// Splits tokens on top-level `;`, dropping statements that are only whitespace/comments.
fn split(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut depth = 0i32;
    for t in tokens {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => {
                if cur.iter().any(|t: &TokenWithSpan| !is_blank(&t.token)) {
                    out.push(std::mem::take(&mut cur));
                } else {
                    cur.clear();
                }
                depth = 0;
                continue;
            }
            Token::EOF => continue,
            _ => {}
        }
        cur.push(t);
    }
    if cur.iter().any(|t| !is_blank(&t.token)) {
        out.push(cur);
    }
    out
}

/// Byte offsets of 1-based (line, column) locations in a text, found by walking forward
/// from the last one asked (statements are asked for in order, so a whole script costs one
/// pass over its text, not one per statement).
struct Locator<'s> {
    sql: &'s str,
    line: u64,
    column: u64,
    byte: usize,
}

impl<'s> Locator<'s> {
    fn new(sql: &'s str) -> Locator<'s> {
        Locator {
            sql,
            line: 1,
            column: 1,
            byte: 0,
        }
    }

    fn offset_of(&mut self, loc: Location) -> usize {
        if (loc.line, loc.column) < (self.line, self.column) {
            *self = Locator::new(self.sql);
        }
        for c in self.sql[self.byte..].chars() {
            if self.line == loc.line && self.column == loc.column {
                return self.byte;
            }
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
            self.byte += c.len_utf8();
        }
        self.sql.len()
    }

    fn text_of(&mut self, tokens: &[TokenWithSpan]) -> String {
        let mut solid = tokens.iter().filter(|t| !is_blank(&t.token));
        let Some(first) = solid.next() else {
            return String::new();
        };
        let last = solid.next_back().unwrap_or(first);
        let start = self.offset_of(first.span.start);
        let end = self.offset_of(last.span.end).max(start);
        self.sql.get(start..end).unwrap_or("").trim().to_string()
    }
}

/// A parser over `tokens`, ending in an EOF token placed just after the last one (so "found:
/// EOF" errors have a position).
fn parser(mut tokens: Vec<TokenWithSpan>) -> Parser<'static> {
    let end = tokens
        .last()
        .map(|t| t.span.end)
        .unwrap_or(Location::new(1, 1));
    tokens.push(TokenWithSpan::new(
        Token::EOF,
        sqlparser::tokenizer::Span::new(end, end),
    ));
    Parser::new(&DIALECT)
        .with_recursion_limit(limits::PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
}

/// The next token's word, upper-cased, if it is an unquoted word.
fn peek_word(p: &Parser) -> Option<String> {
    match &p.peek_token_ref().token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_uppercase()),
        _ => None,
    }
}

fn parse_word(p: &mut Parser, word: &str) -> bool {
    if peek_word(p).as_deref() == Some(word) {
        p.next_token();
        true
    } else {
        false
    }
}

fn expect_word(p: &mut Parser, word: &str) -> Result<(), SqlError> {
    if parse_word(p, word) {
        Ok(())
    } else {
        let t = p.peek_token();
        Err(
            SqlError::syntax(format!("expected {word}, found {}", t.token))
                .at(Position::of(t.span.start)),
        )
    }
}

fn position(p: &Parser) -> Option<Position> {
    Position::of(p.peek_token_ref().span.start)
}

fn expect_end(p: &mut Parser) -> Result<(), SqlError> {
    let t = p.peek_token();
    if t.token == Token::EOF {
        Ok(())
    } else {
        Err(SqlError::syntax(format!(
            "unexpected '{}' after the end of the statement",
            t.token
        ))
        .at(Position::of(t.span.start)))
    }
}

fn name(p: &mut Parser) -> Result<String, SqlError> {
    Ok(ident_name(&p.parse_identifier()?))
}

fn parse_one(tokens: Vec<TokenWithSpan>, text: &str) -> Result<Statement, SqlError> {
    let mut p = parser(tokens.clone());
    let at = position(&p);
    let first = peek_word(&p).unwrap_or_default();
    let stmt = match first.as_str() {
        "CREATE" => {
            p.next_token();
            create(&mut p, &tokens)?
        }
        "DROP" => {
            p.next_token();
            drop(&mut p)?
        }
        "INSERT" => {
            p.next_token();
            insert(&mut p, &tokens)?
        }
        "SHOW" | "LIST" => {
            p.next_token();
            let what = match peek_word(&p).as_deref() {
                Some("STREAMS") => ShowWhat::Streams,
                Some("TABLES") => ShowWhat::Tables,
                Some("QUERIES") => ShowWhat::Queries,
                Some("FUNCTIONS") => ShowWhat::Functions,
                Some("TOPICS") => ShowWhat::Topics,
                _ => {
                    return Err(SqlError::syntax(
                        "expected STREAMS, TABLES, QUERIES, FUNCTIONS or TOPICS after SHOW",
                    )
                    .at(position(&p)));
                }
            };
            p.next_token();
            parse_word(&mut p, "EXTENDED");
            expect_end(&mut p)?;
            Statement::Show(what)
        }
        "DESCRIBE" | "DESC" => {
            p.next_token();
            if parse_word(&mut p, "FUNCTION") {
                let name = name(&mut p)?;
                expect_end(&mut p)?;
                Statement::DescribeFunction { name }
            } else {
                let name = name(&mut p)?;
                parse_word(&mut p, "EXTENDED");
                expect_end(&mut p)?;
                Statement::Describe { name }
            }
        }
        "TERMINATE" => {
            p.next_token();
            let id = if parse_word(&mut p, "ALL") {
                None
            } else {
                Some(name(&mut p)?)
            };
            expect_end(&mut p)?;
            Statement::Terminate(id)
        }
        "SELECT" => Statement::Select(select(tokens, text)?),
        _ => {
            return Err(SqlError::syntax(format!(
                "unknown statement '{}': expected CREATE, DROP, INSERT, SELECT, SHOW, DESCRIBE \
                 or TERMINATE",
                text.split_whitespace().next().unwrap_or("")
            ))
            .at(at));
        }
    };
    Ok(stmt)
}

fn source_kind(p: &mut Parser) -> Option<SourceKind> {
    if parse_word(p, "STREAM") {
        Some(SourceKind::Stream)
    } else if parse_word(p, "TABLE") {
        Some(SourceKind::Table)
    } else {
        None
    }
}

fn create(p: &mut Parser, tokens: &[TokenWithSpan]) -> Result<Statement, SqlError> {
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    if parse_word(p, "FUNCTION") {
        let name = name(p)?;
        let artifact = if p.parse_keyword(Keyword::AS) {
            p.parse_literal_string()?
        } else {
            let at = position(p);
            let props = with_props(p)?;
            props.get("ARTIFACT").cloned().ok_or_else(|| {
                SqlError::syntax("CREATE FUNCTION needs WITH (ARTIFACT='<uploaded artifact>')")
                    .at(at)
            })?
        };
        expect_end(p)?;
        return Ok(Statement::CreateFunction {
            name,
            or_replace,
            artifact,
        });
    }
    let Some(kind) = source_kind(p) else {
        return Err(
            SqlError::syntax("expected STREAM, TABLE or FUNCTION after CREATE").at(position(p)),
        );
    };
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = name(p)?;
    let mut columns = Vec::new();
    if p.peek_token_ref().token == Token::LParen {
        p.next_token();
        loop {
            columns.push(column_def(p, kind)?);
            if p.consume_token(&Token::Comma) {
                continue;
            }
            p.expect_token(&Token::RParen)?;
            break;
        }
    }
    let props = if peek_word(p).as_deref() == Some("WITH") {
        with_props(p)?
    } else {
        Properties::new()
    };
    if p.parse_keyword(Keyword::AS) {
        if !columns.is_empty() {
            return Err(SqlError::syntax(
                "a CREATE ... AS SELECT takes its columns from the SELECT; drop the column list",
            ));
        }
        let rest = tokens[p.get_current_index() + 1..].to_vec();
        let text = text_of_tokens(&rest);
        let select = select(rest, &text)?;
        return Ok(Statement::CreateAs {
            kind,
            name,
            or_replace,
            if_not_exists,
            props,
            select,
        });
    }
    expect_end(p)?;
    Ok(Statement::CreateSource {
        kind,
        name,
        or_replace,
        if_not_exists,
        columns,
        props,
    })
}

fn text_of_tokens(tokens: &[TokenWithSpan]) -> String {
    tokens
        .iter()
        .map(|t| t.token.to_string())
        .collect::<String>()
        .trim()
        .to_string()
}

fn column_def(p: &mut Parser, kind: SourceKind) -> Result<ColumnDef, SqlError> {
    let name = name(p)?;
    let ty = data_type(p)?;
    let key = if p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
        if kind == SourceKind::Stream {
            return Err(SqlError::syntax(format!(
                "column {name}: streams have KEY columns, tables PRIMARY KEY ones"
            ))
            .at(position(p)));
        }
        true
    } else if parse_word(p, "KEY") {
        if kind == SourceKind::Table {
            return Err(SqlError::syntax(format!(
                "column {name}: a table's key column is declared PRIMARY KEY"
            ))
            .at(position(p)));
        }
        true
    } else {
        false
    };
    Ok(ColumnDef { name, ty, key })
}

/// `BOOLEAN | INT | INTEGER | BIGINT | DOUBLE | VARCHAR | STRING | TIMESTAMP | BYTES |
/// ARRAY<T> | MAP<STRING, T> | STRUCT<name T, ...>`, nested at most `MAX_TYPE_DEPTH` deep.
pub fn data_type(p: &mut Parser) -> Result<SqlType, SqlError> {
    nested_type(p, 1)
}

fn nested_type(p: &mut Parser, depth: usize) -> Result<SqlType, SqlError> {
    let at = position(p);
    if depth > MAX_TYPE_DEPTH {
        return Err(
            limits::too_deep(format!("column types nest at most {MAX_TYPE_DEPTH} deep")).at(at),
        );
    }
    let word = peek_word(p).ok_or_else(|| SqlError::syntax("expected a type").at(at))?;
    p.next_token();
    let ty = match word.as_str() {
        "BOOLEAN" | "BOOL" => SqlType::Boolean,
        "INT" | "INTEGER" => SqlType::Int,
        "BIGINT" => SqlType::Bigint,
        "DOUBLE" | "FLOAT" | "REAL" | "DECIMAL" => {
            skip_type_args(p)?;
            SqlType::Double
        }
        "VARCHAR" | "STRING" | "TEXT" => {
            skip_type_args(p)?;
            SqlType::String
        }
        "TIMESTAMP" => SqlType::Timestamp,
        "BYTES" => SqlType::Bytes,
        "ARRAY" => {
            p.expect_token(&Token::Lt)?;
            let inner = nested_type(p, depth + 1)?;
            expect_gt(p)?;
            SqlType::Array(Box::new(inner))
        }
        "MAP" => {
            p.expect_token(&Token::Lt)?;
            let k = nested_type(p, depth + 1)?;
            if k != SqlType::String {
                return Err(SqlError::new(
                    "unsupported",
                    "MAP keys must be STRING (values are JSON objects)",
                )
                .at(at));
            }
            p.expect_token(&Token::Comma)?;
            let v = nested_type(p, depth + 1)?;
            expect_gt(p)?;
            SqlType::Map(Box::new(v))
        }
        "STRUCT" => {
            p.expect_token(&Token::Lt)?;
            let mut fields = Vec::new();
            loop {
                let n = name(p)?;
                let t = nested_type(p, depth + 1)?;
                fields.push((n, t));
                if p.consume_token(&Token::Comma) {
                    continue;
                }
                expect_gt(p)?;
                break;
            }
            SqlType::Struct(fields)
        }
        other => {
            return Err(SqlError::syntax(format!("unknown type {other}")).at(at));
        }
    };
    Ok(ty)
}

/// `>` closing a type; the tokenizer reads `>>` in `ARRAY<ARRAY<INT>>` as one token.
fn expect_gt(p: &mut Parser) -> Result<(), SqlError> {
    let t = p.next_token();
    match t.token {
        Token::Gt => Ok(()),
        Token::ShiftRight => {
            // Leave one `>` for the enclosing type by re-reading it as `Gt`.
            p.prev_token();
            let idx = p.get_current_index();
            let _ = idx;
            Err(
                SqlError::syntax("write nested types with a space: `ARRAY<ARRAY<INT> >`")
                    .at(Position::of(t.span.start)),
            )
        }
        other => {
            Err(SqlError::syntax(format!("expected '>', found {other}"))
                .at(Position::of(t.span.start)))
        }
    }
}

fn skip_type_args(p: &mut Parser) -> Result<(), SqlError> {
    if p.consume_token(&Token::LParen) {
        loop {
            let t = p.next_token();
            match t.token {
                Token::RParen => break,
                Token::EOF => return Err(SqlError::syntax("unclosed '(' in a type")),
                _ => {}
            }
        }
    }
    Ok(())
}

/// `WITH (NAME = 'value' | number | TRUE, ...)`.
fn with_props(p: &mut Parser) -> Result<Properties, SqlError> {
    expect_word(p, "WITH")?;
    p.expect_token(&Token::LParen)?;
    let mut props = Properties::new();
    loop {
        let key = name(p)?.to_uppercase();
        p.expect_token(&Token::Eq)?;
        let t = p.next_token();
        let value = match t.token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Word(w) => w.value,
            other => {
                return Err(SqlError::syntax(format!(
                    "expected a value for property {key}, found {other}"
                ))
                .at(Position::of(t.span.start)));
            }
        };
        props.insert(key, value);
        if p.consume_token(&Token::Comma) {
            continue;
        }
        p.expect_token(&Token::RParen)?;
        break;
    }
    Ok(props)
}

fn drop(p: &mut Parser) -> Result<Statement, SqlError> {
    if parse_word(p, "FUNCTION") {
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = name(p)?;
        expect_end(p)?;
        return Ok(Statement::DropFunction { name, if_exists });
    }
    let Some(kind) = source_kind(p) else {
        return Err(
            SqlError::syntax("expected STREAM, TABLE or FUNCTION after DROP").at(position(p)),
        );
    };
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = name(p)?;
    let delete_topic = if parse_word(p, "DELETE") {
        expect_word(p, "TOPIC")?;
        true
    } else {
        false
    };
    expect_end(p)?;
    Ok(Statement::Drop {
        kind,
        name,
        if_exists,
        delete_topic,
    })
}

fn insert(p: &mut Parser, tokens: &[TokenWithSpan]) -> Result<Statement, SqlError> {
    p.expect_keyword(Keyword::INTO)?;
    let target = name(p)?;
    let mut columns = None;
    if p.peek_token_ref().token == Token::LParen {
        p.next_token();
        let cols = p.parse_comma_separated(|p| p.parse_identifier())?;
        p.expect_token(&Token::RParen)?;
        columns = Some(cols.iter().map(ident_name).collect());
    }
    if p.parse_keyword(Keyword::VALUES) {
        p.expect_token(&Token::LParen)?;
        let values = p.parse_comma_separated(|p| p.parse_expr())?;
        p.expect_token(&Token::RParen)?;
        expect_end(p)?;
        return Ok(Statement::InsertValues {
            target,
            columns,
            values,
        });
    }
    if columns.is_some() {
        return Err(SqlError::syntax("expected VALUES after the column list").at(position(p)));
    }
    if peek_word(p).as_deref() != Some("SELECT") {
        return Err(SqlError::syntax("expected SELECT or VALUES").at(position(p)));
    }
    let rest = tokens[p.get_current_index() + 1..].to_vec();
    let text = text_of_tokens(&rest);
    Ok(Statement::InsertSelect {
        target,
        select: select(rest, &text)?,
    })
}

fn word_of(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_uppercase()),
        _ => None,
    }
}

/// Index of the next non-blank token at or after `i`.
fn next_solid(tokens: &[TokenWithSpan], mut i: usize) -> Option<usize> {
    while i < tokens.len() {
        if !is_blank(&tokens[i].token) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Parses a SELECT: removes the top-level `WINDOW <kind> (...)` and `EMIT CHANGES|FINAL`
/// clauses, parses them here, and the rest with sqlparser.
fn select(tokens: Vec<TokenWithSpan>, text: &str) -> Result<SelectStmt, SqlError> {
    let mut kept = Vec::with_capacity(tokens.len());
    let mut window = None;
    let mut emit = None;
    let mut depth = 0i32;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            let w = word_of(&t.token);
            let next = next_solid(&tokens, i + 1);
            let next_word = next.and_then(|n| word_of(&tokens[n].token));
            match (w.as_deref(), next_word.as_deref(), next) {
                (Some("WINDOW"), Some(kind @ ("TUMBLING" | "HOPPING" | "SESSION")), Some(n)) => {
                    let kind = match kind {
                        "TUMBLING" => WindowKind::Tumbling,
                        "HOPPING" => WindowKind::Hopping,
                        _ => WindowKind::Session,
                    };
                    // The parenthesised spec runs to the matching `)`.
                    let open = next_solid(&tokens, n + 1).ok_or_else(|| {
                        SqlError::syntax("expected '(' after the window kind")
                            .at(Position::of(tokens[n].span.end))
                    })?;
                    let mut d = 0;
                    let mut close = open;
                    for (j, tok) in tokens.iter().enumerate().skip(open) {
                        match tok.token {
                            Token::LParen => d += 1,
                            Token::RParen => {
                                d -= 1;
                                if d == 0 {
                                    close = j;
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    if close == open {
                        return Err(SqlError::syntax("unclosed window specification")
                            .at(Position::of(tokens[open].span.start)));
                    }
                    if window.is_some() {
                        return Err(SqlError::syntax("only one WINDOW clause is allowed")
                            .at(Position::of(t.span.start)));
                    }
                    window = Some(window_spec(kind, tokens[open..=close].to_vec())?);
                    i = close + 1;
                    continue;
                }
                (Some("EMIT"), Some(e @ ("CHANGES" | "FINAL")), Some(n)) => {
                    emit = Some(if e == "CHANGES" {
                        Emit::Changes
                    } else {
                        Emit::Final
                    });
                    i = n + 1;
                    continue;
                }
                _ => {}
            }
        }
        kept.push(t.clone());
        i += 1;
    }
    let mut p = parser(kept);
    let query = p.parse_query()?;
    expect_end(&mut p)?;
    Ok(SelectStmt {
        query,
        window,
        emit,
        text: text.to_string(),
    })
}

/// `( SIZE n unit [, ADVANCE BY n unit] [, RETENTION n unit] [, GRACE PERIOD n unit] )` or,
/// for sessions, `( n unit [, GRACE PERIOD n unit] )`.
fn window_spec(kind: WindowKind, tokens: Vec<TokenWithSpan>) -> Result<WindowSpec, SqlError> {
    let mut p = parser(tokens);
    p.expect_token(&Token::LParen)?;
    let mut size = None;
    let mut advance = None;
    let mut grace = None;
    let mut first = true;
    loop {
        let at = position(&p);
        let bare_gap = kind == WindowKind::Session && first && peek_word(&p).is_none();
        if bare_gap || parse_word(&mut p, "SIZE") {
            size = Some(duration(&mut p)?);
        } else if parse_word(&mut p, "ADVANCE") {
            expect_word(&mut p, "BY")?;
            advance = Some(duration(&mut p)?);
        } else if parse_word(&mut p, "RETENTION") {
            duration(&mut p)?;
        } else if parse_word(&mut p, "GRACE") {
            expect_word(&mut p, "PERIOD")?;
            grace = Some(duration(&mut p)?);
        } else {
            return Err(SqlError::syntax(
                "expected SIZE, ADVANCE BY, RETENTION or GRACE PERIOD in the window",
            )
            .at(at));
        }
        first = false;
        if p.consume_token(&Token::Comma) {
            continue;
        }
        p.expect_token(&Token::RParen)?;
        break;
    }
    let size_ms = size.ok_or_else(|| SqlError::syntax("the window needs a SIZE"))?;
    if size_ms <= 0 {
        return Err(SqlError::syntax("the window size must be positive"));
    }
    let advance_ms = match kind {
        WindowKind::Tumbling => {
            if advance.is_some() {
                return Err(SqlError::syntax("ADVANCE BY belongs to HOPPING windows"));
            }
            size_ms
        }
        WindowKind::Hopping => {
            let a = advance.ok_or_else(|| SqlError::syntax("a HOPPING window needs ADVANCE BY"))?;
            if a <= 0 || a > size_ms {
                return Err(SqlError::syntax(
                    "ADVANCE BY must be positive and no larger than SIZE",
                ));
            }
            if size_ms / a > MAX_HOPS {
                return Err(SqlError::new(
                    "unsupported",
                    format!(
                        "a record may fall in at most {MAX_HOPS} hopping windows (SIZE / ADVANCE BY)"
                    ),
                ));
            }
            a
        }
        WindowKind::Session => 0,
    };
    Ok(WindowSpec {
        kind,
        size_ms,
        advance_ms,
        grace_ms: grace.unwrap_or(DEFAULT_GRACE_MS),
    })
}

/// `n unit` in ms.
fn duration(p: &mut Parser) -> Result<i64, SqlError> {
    let at = position(p);
    let n = p.parse_literal_uint()?;
    let unit = peek_word(p).ok_or_else(|| SqlError::syntax("expected a time unit").at(at))?;
    p.next_token();
    let ms: u64 = match unit.trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        other => {
            return Err(SqlError::syntax(format!(
                "unknown time unit {other}: use MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS"
            ))
            .at(at));
        }
    };
    n.checked_mul(ms)
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| SqlError::syntax("duration too large").at(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Statement {
        let mut v = parse(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert_eq!(v.len(), 1);
        v.remove(0).statement
    }

    #[test]
    fn the_fraud_query_parses_as_written() {
        let s = one(
            "CREATE STREAM possible_fraud AS SELECT card_number, count() FROM \
             authorization_attempts WINDOW TUMBLING (SIZE 5 MINUTE) GROUP BY card_number \
             HAVING count() > 3;",
        );
        let Statement::CreateAs {
            kind, name, select, ..
        } = s
        else {
            panic!("{s:?}")
        };
        assert_eq!(kind, SourceKind::Stream);
        assert_eq!(name, "POSSIBLE_FRAUD");
        let w = select.window.unwrap();
        assert_eq!(w.kind, WindowKind::Tumbling);
        assert_eq!(w.size_ms, 300_000);
        assert_eq!(w.grace_ms, DEFAULT_GRACE_MS);
        assert!(select.emit.is_none());
    }

    #[test]
    fn create_stream_with_columns_and_props() {
        let s = one(
            "create stream s (id varchar key, amount double, tags array<string>, \
             m map<string, int>, st struct<a int, b string>) \
             with (kafka_topic='t', value_format='json', partitions=3, timestamp='ts')",
        );
        let Statement::CreateSource { columns, props, .. } = s else {
            panic!()
        };
        assert_eq!(columns.len(), 5);
        assert!(columns[0].key);
        assert_eq!(columns[2].ty, SqlType::Array(Box::new(SqlType::String)));
        assert_eq!(props["KAFKA_TOPIC"], "t");
        assert_eq!(props["PARTITIONS"], "3");
    }

    #[test]
    fn windows_and_emit() {
        let s = one(
            "SELECT k, COUNT(*) FROM s WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS, \
             GRACE PERIOD 1 SECOND) GROUP BY k EMIT FINAL",
        );
        let Statement::Select(sel) = s else { panic!() };
        let w = sel.window.unwrap();
        assert_eq!(
            (w.size_ms, w.advance_ms, w.grace_ms),
            (10_000, 5_000, 1_000)
        );
        assert_eq!(sel.emit, Some(Emit::Final));
        let s = one("SELECT k FROM s WINDOW SESSION (30 SECONDS) GROUP BY k EMIT CHANGES;");
        let Statement::Select(sel) = s else { panic!() };
        assert_eq!(sel.window.unwrap().kind, WindowKind::Session);
        assert_eq!(sel.emit, Some(Emit::Changes));
    }

    #[test]
    fn scripts_split_on_semicolons_outside_quotes() {
        let v =
            parse("SHOW STREAMS; INSERT INTO s (a) VALUES ('x;y'); -- c\n SHOW TABLES;").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].text, "INSERT INTO s (a) VALUES ('x;y')");
    }

    #[test]
    fn errors_carry_positions() {
        let e = parse("SELECT a FROM s WHERE").unwrap_err();
        assert_eq!(e.code, "sql_syntax");
        assert!(e.position.is_some(), "{e:?}");
        let e = parse("CREATE STREAM s (a FOO)").unwrap_err();
        assert!(e.message.contains("unknown type FOO"), "{e:?}");
        assert_eq!(e.position.unwrap().column, 20);
        let e = parse("FROB x").unwrap_err();
        assert!(e.message.contains("unknown statement"));
        assert!(parse("SELECT * FROM s WINDOW TUMBLING (SIZE 0 SECONDS)").is_err());
        assert!(parse("SELECT * FROM s WINDOW TUMBLING (SIZE 5 PARSECS)").is_err());
    }

    #[test]
    fn other_statements() {
        assert_eq!(one("show queries"), Statement::Show(ShowWhat::Queries));
        assert_eq!(one("TERMINATE ALL"), Statement::Terminate(None));
        assert_eq!(
            one("DROP TABLE IF EXISTS t DELETE TOPIC"),
            Statement::Drop {
                kind: SourceKind::Table,
                name: "T".into(),
                if_exists: true,
                delete_topic: true
            }
        );
        assert_eq!(
            one("CREATE OR REPLACE FUNCTION mask WITH (ARTIFACT='mask')"),
            Statement::CreateFunction {
                name: "MASK".into(),
                or_replace: true,
                artifact: "mask".into()
            }
        );
        assert!(matches!(
            one("INSERT INTO s (a, b) VALUES (1, 'x')"),
            Statement::InsertValues { .. }
        ));
        assert!(matches!(
            one("INSERT INTO s SELECT * FROM t"),
            Statement::InsertSelect { .. }
        ));
        assert_eq!(
            one("describe \"Mixed\""),
            Statement::Describe {
                name: "Mixed".into()
            }
        );
    }
}
