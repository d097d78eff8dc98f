//! The interactive `weir sql` shell: a `weir>` prompt with line editing and history
//! (rustyline, kept in `~/.weir_history`). A statement may span lines (`    >` prompts for
//! more) and runs once a `;` ends it; `exit`, `quit` or Ctrl-D leaves; Ctrl-C at the prompt
//! clears what was typed, and while a statement runs it cancels that statement only.

use std::path::PathBuf;

use anyhow::{Context, Result};
use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor};

use super::split::split;
use super::{Flow, Session, locate};

const PROMPT: &str = "weir> ";
const CONTINUE_PROMPT: &str = "    > ";
const HISTORY_ENTRIES: usize = 1000;

/// `~/.weir_history`, if there is a home directory.
fn history_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".weir_history"))
}

/// Whether a line typed at an empty prompt leaves the shell.
fn is_exit(line: &str) -> bool {
    let word = line.trim().trim_end_matches(';').trim();
    word.eq_ignore_ascii_case("exit") || word.eq_ignore_ascii_case("quit")
}

pub async fn run(session: &mut Session) -> Result<()> {
    let config = Config::builder()
        .max_history_size(HISTORY_ENTRIES)
        .context("cannot configure the line editor")?
        .auto_add_history(false)
        .build();
    let mut editor = DefaultEditor::with_config(config).context("cannot open the terminal")?;
    let history = history_path();
    if let Some(path) = &history {
        // A missing or unreadable history file is not worth stopping for.
        let _ = editor.load_history(path);
    }
    // Catch SIGINT from now on, so that Ctrl-C while a statement runs (the terminal is not in
    // raw mode then) cancels that statement instead of killing the shell.
    #[cfg(unix)]
    let _ = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    println!(
        "Weir SQL shell on {}. End statements with ';'. 'exit' or Ctrl-D leaves.",
        session.url().trim_end_matches('/')
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.trim().is_empty() {
            PROMPT
        } else {
            CONTINUE_PROMPT
        };
        // Blocks this thread (the runtime's `block_on` thread, not a worker) while typing.
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("cannot read from the terminal"),
        };
        if buffer.trim().is_empty() && is_exit(&line) {
            break;
        }
        if !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
        }
        buffer.push_str(&line);
        buffer.push('\n');
        let parts = split(&buffer);
        if parts.statements.is_empty() {
            if parts.is_complete() {
                buffer.clear(); // only blanks and comments
            }
            continue;
        }
        let rest = buffer[parts.rest_offset..].to_string();
        let several = parts.statements.len() > 1;
        let mut quit = false;
        for statement in &parts.statements {
            match session.execute(statement).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => {
                    quit = true;
                    break;
                }
                Err(e) => {
                    let e = locate(e, statement, several);
                    eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
                    break; // the rest of the line is not run
                }
            }
        }
        buffer = if parts.is_complete() {
            String::new()
        } else {
            rest
        };
        if let Some(path) = &history {
            let _ = editor.save_history(path);
        }
        if quit {
            break;
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_words() {
        assert!(is_exit("exit"));
        assert!(is_exit(" QUIT; "));
        assert!(is_exit("Exit;"));
        assert!(!is_exit("exits"));
        assert!(!is_exit("SELECT exit FROM t;"));
    }
}
