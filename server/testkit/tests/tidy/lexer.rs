//! A small Rust lexer: code with comments and literals blanked out (line structure kept), and
//! the scans the rules make over it (functions, `Result<_, String>`, `#[cfg(test)]` items).

/// `src` with the contents of comments, strings and char literals replaced by spaces (newlines
/// kept, so line numbers hold). String delimiters stay (as `"`), so `"…"` reads as an empty string.
pub fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let ident_before = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if !ident_before && raw_string_start(&c, i).is_some() {
            let (prefix, hashes) = raw_string_start(&c, i).unwrap_or_default();
            for _ in 0..prefix {
                out.push(' ');
            }
            out.push('"');
            i += prefix + 1;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                    out.push('"');
                    for _ in 0..hashes {
                        out.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(c[i]));
                i += 1;
            }
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' && i + 1 < c.len() {
                    out.push(' ');
                    i += 1;
                }
                out.push(blank(c[i]));
                i += 1;
            }
            if i < c.len() {
                out.push('"');
                i += 1;
            }
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\u{..}', '\''), else a lifetime or label.
            let end = if c.get(i + 1) == Some(&'\\') {
                (i + 3..c.len().min(i + 12)).find(|&k| c[k] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    out.push('\'');
                    out.extend(c[i + 1..e].iter().map(|&ch| blank(ch)));
                    out.push('\'');
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// At `i`, a raw string (`r"`, `r#"`, `br"`, `cr#"`…)? Returns (prefix length, number of `#`).
pub fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if matches!(c.get(j), Some('b') | Some('c')) {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some((j - i, hashes))
}

pub fn is_ident_char(ch: u8) -> bool {
    ch.is_ascii_alphanumeric() || ch == b'_'
}

/// Byte offsets of `word` as a whole identifier in `code`.
pub fn find_word(code: &str, word: &str) -> Vec<usize> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(k) = code[from..].find(word) {
        let at = from + k;
        let end = at + word.len();
        let before_ok = at == 0 || !is_ident_char(b[at - 1]);
        let after_ok = end >= b.len() || !is_ident_char(b[end]);
        if before_ok && after_ok {
            out.push(at);
        }
        from = end;
    }
    out
}

pub fn line_of(code: &str, at: usize) -> usize {
    code.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The offset of the `}` matching the `{` at `open` (or the end of `code`).
pub fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (k, ch) in code.bytes().enumerate().skip(open) {
        match ch {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// After `from`, the first `{` or `;` outside `()` and `[]`: where an item's body starts or the
/// item ends.
pub fn item_body_or_end(code: &str, from: usize) -> Option<(usize, u8)> {
    let mut depth = 0i32;
    for (k, ch) in code.bytes().enumerate().skip(from) {
        match ch {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'{' | b';' if depth <= 0 => return Some((k, ch)),
            _ => {}
        }
    }
    None
}

/// Stripped code with every `#[cfg(test)]` item (module, function, impl, use) blanked out.
pub fn without_test_items(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    for start in code.match_indices("#[cfg(test)]").map(|(k, _)| k) {
        let after = start + "#[cfg(test)]".len();
        let end = match item_body_or_end(code, after) {
            Some((k, b'{')) => matching_brace(code, k),
            Some((k, _)) => k,
            None => code.len() - 1,
        };
        for b in &mut out[start..=end.min(code.len() - 1)] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (name, first line, lines) of every function with a body.
pub fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for at in find_word(code, "fn") {
        let mut k = at + 2;
        while k < b.len() && b[k].is_ascii_whitespace() {
            k += 1;
        }
        let name_start = k;
        while k < b.len() && is_ident_char(b[k]) {
            k += 1;
        }
        if k == name_start || b[name_start].is_ascii_digit() {
            continue; // `fn(..)` type or `fn $name` in a macro
        }
        if let Some((open, b'{')) = item_body_or_end(code, k) {
            let close = matching_brace(code, open);
            let first = line_of(code, at);
            let last = line_of(code, close.min(code.len() - 1));
            out.push((code[name_start..k].to_string(), first, last - first + 1));
        }
    }
    out
}

/// Offsets of `Result<…, String>` (last top-level generic argument `String`) in stripped code.
pub fn string_results(code: &str) -> Vec<usize> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for at in find_word(code, "Result") {
        let mut k = at + "Result".len();
        while k < b.len() && b[k].is_ascii_whitespace() {
            k += 1;
        }
        if b.get(k) != Some(&b'<') {
            continue;
        }
        // Only `Result<T, E>` with two arguments: `anyhow::Result<String>` is fine.
        let (mut depth, mut last_arg_start, mut commas) = (0i32, k + 1, 0);
        let mut end = None;
        for (j, &ch) in b.iter().enumerate().skip(k) {
            match ch {
                b'<' | b'(' | b'[' => depth += 1,
                b'>' if j > 0 && b[j - 1] == b'-' => {} // `->` in a fn type
                b'>' | b')' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(j);
                        break;
                    }
                }
                b',' if depth == 1 => {
                    last_arg_start = j + 1;
                    commas += 1;
                }
                b';' | b'{' => break,
                _ => {}
            }
        }
        if let Some(e) = end.filter(|_| commas > 0) {
            let last = code[last_arg_start..e].trim().trim_end_matches(',').trim();
            if matches!(
                last,
                "String" | "std::string::String" | "alloc::string::String"
            ) {
                out.push(at);
            }
        }
    }
    out
}
