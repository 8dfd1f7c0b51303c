//! `faascache shell`: one client, many commands, read from stdin — for scripts that need one
//! client across commands (its lease, its exactly-once state, its caches), and for tests that
//! pause a client process.
//!
//! One command per line, one reply line each (flushed at once):
//!
//! | command | reply |
//! |---|---|
//! | `put TABLE KEY VALUE` (VALUE: the rest of the line) | `ok VERSION` |
//! | `get TABLE KEY` | `ok VALUE` (lossy UTF-8) or `notfound` |
//! | `incr TABLE KEY [DELTA]` | `ok NEW_VALUE` |
//! | `rm TABLE KEY` | `ok REMOVED_VERSION` (0: there was none) |
//! | `lease` | `ok CLIENT_ID EXPIRATION TIMESTAMP` (0 0 0 before the first tracked mutation) |
//! | `quit` | (none: the shell ends; so does end of input) |
//!
//! A failed command answers `error MESSAGE` and the shell goes on. Empty lines and lines
//! starting with `#` get no reply. Lines longer than [`MAX_LINE`] bytes are refused.

use std::io::{BufRead, Write};

use crate::{Client, Error};

/// Longest command line (a key and a value at their limits fit).
pub const MAX_LINE: usize = faascache_protocol::msg::MAX_KEY_LEN
    + faascache_protocol::msg::MAX_VALUE_LEN
    + faascache_protocol::msg::MAX_TABLE_NAME_LEN
    + 64;

/// Runs the shell over `input` until `quit` or end of input; `Err` only if `output` fails.
pub fn run<R: BufRead>(
    client: &Client,
    input: &mut R,
    output: &mut dyn Write,
) -> std::io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n =
            std::io::Read::take(&mut *input, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE && line.last() != Some(&b'\n') {
            writeln!(output, "error line longer than {MAX_LINE} bytes")?;
            output.flush()?;
            // Skip the rest of the over-long line.
            loop {
                let buf = input.fill_buf()?;
                if buf.is_empty() {
                    return Ok(());
                }
                match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        input.consume(i + 1);
                        break;
                    }
                    None => {
                        let l = buf.len();
                        input.consume(l);
                    }
                }
            }
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        let trimmed = text.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed == "quit" || trimmed == "exit" {
            return Ok(());
        }
        let reply = match command(client, trimmed) {
            Ok(r) => r,
            Err(e) => format!("error {}", e.to_string().replace('\n', " ")),
        };
        writeln!(output, "{reply}")?;
        output.flush()?;
    }
}

/// Splits off the first whitespace-separated word.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn usage(m: &str) -> Error {
    Error::InvalidArgument(m.to_string())
}

/// One command's reply line.
fn command(c: &Client, line: &str) -> Result<String, Error> {
    let (cmd, rest) = word(line);
    let (table, rest) = word(rest);
    let (key, rest) = word(rest);
    let need = |what: &str| -> Result<(), Error> {
        if table.is_empty() || key.is_empty() {
            Err(usage(&format!("usage: {what}")))
        } else {
            Ok(())
        }
    };
    match cmd {
        "put" => {
            need("put TABLE KEY VALUE")?;
            // The value is the rest of the line after one separating blank.
            let value = rest.strip_prefix([' ', '\t']).unwrap_or(rest);
            let t = c.table_id(table)?;
            Ok(format!(
                "ok {}",
                c.write(t, key.as_bytes(), value.as_bytes())?
            ))
        }
        "get" => {
            need("get TABLE KEY")?;
            let t = c.table_id(table)?;
            match c.read(t, key.as_bytes()) {
                Ok(o) => Ok(format!("ok {}", String::from_utf8_lossy(&o.value))),
                Err(Error::NoSuchObject) => Ok("notfound".into()),
                Err(e) => Err(e),
            }
        }
        "incr" => {
            need("incr TABLE KEY [DELTA]")?;
            let delta = match rest.trim() {
                "" => 1,
                d => d
                    .parse::<i64>()
                    .map_err(|_| usage(&format!("bad DELTA {d:?}: an integer")))?,
            };
            let t = c.table_id(table)?;
            Ok(format!(
                "ok {}",
                c.increment_i64(t, key.as_bytes(), delta)?.0
            ))
        }
        "rm" => {
            need("rm TABLE KEY")?;
            let t = c.table_id(table)?;
            Ok(format!("ok {}", c.remove(t, key.as_bytes())?.unwrap_or(0)))
        }
        "lease" => {
            let l = c.lease();
            Ok(format!(
                "ok {} {} {}",
                l.client_id, l.expiration, l.timestamp
            ))
        }
        _ => Err(usage(&format!(
            "unknown command {cmd:?}: use put, get, incr, rm, lease or quit"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split() {
        assert_eq!(word("  put t k v w"), ("put", " t k v w"));
        assert_eq!(word("lease"), ("lease", ""));
        assert_eq!(word(""), ("", ""));
    }
}
