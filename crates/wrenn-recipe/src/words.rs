//! Shell-like words (for `COPY` and `WORKDIR`) and the quoting that writes them back.

/// The characters that separate words and that are trimmed around instructions.
pub(crate) const BLANKS: [char; 3] = [' ', '\t', '\r'];

/// Whether `c` is a blank (space, tab or carriage return).
pub(crate) fn is_blank(c: char) -> bool {
    BLANKS.contains(&c)
}

/// Splits `s` into words like a shell (without expansions): blanks separate words; `'...'` is
/// literal; in `"..."`, `\"` and `\\` are a quote and a backslash, any other backslash stays;
/// outside quotes a backslash makes the next character literal (a last backslash stays).
/// Quoted and unquoted pieces next to each other make one word; `''` is an empty word.
pub(crate) fn split(s: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if is_blank(c) => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated single quote"),
                        Some('\'') => break,
                        Some(c) => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                take_double_quoted(&mut chars, &mut word)?;
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().unwrap_or('\\'));
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// `word` written so that [`split`] gives it back as one word, and so that it is not taken for
/// an option (it does not start with `--` unquoted): as it is when it only has safe
/// characters, else in single quotes (a `'` in it written `'\''`).
pub(crate) fn quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./+@%:=,~^".contains(c);
    if !word.is_empty() && !word.starts_with("--") && word.chars().all(safe) {
        return word.to_string();
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('\'');
    for c in word.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// Reads a double-quoted text whose opening quote is already taken, up to and with its closing
/// quote, into `out`: `\"` and `\\` are a quote and a backslash, any other backslash stays.
pub(crate) fn take_double_quoted(
    chars: &mut impl Iterator<Item = char>,
    out: &mut String,
) -> Result<(), &'static str> {
    loop {
        match chars.next() {
            None => return Err("unterminated double quote"),
            Some('"') => return Ok(()),
            Some('\\') => match chars.next() {
                None => return Err("unterminated double quote"),
                Some(c @ ('"' | '\\')) => out.push(c),
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
            },
            Some(c) => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("  a  b\tc ", &["a", "b", "c"]),
            ("'a b' c", &["a b", "c"]),
            (r#""a \"b\" \\ \n" c"#, &[r#"a "b" \ \n"#, "c"]),
            (r"a\ b c\\", &["a b", r"c\"]),
            (r"a\", &[r"a\"]),
            (r#"x'y z'"w""#, &["xy zw"]),
            ("'' \"\"", &["", ""]),
            ("'it'\\''s'", &["it's"]),
            ("'$HOME' #x", &["$HOME", "#x"]),
        ];
        for (text, words) in cases {
            assert_eq!(split(text).unwrap(), *words, "{text:?}");
        }
    }

    #[test]
    fn unterminated_quotes() {
        assert_eq!(split("'a"), Err("unterminated single quote"));
        assert_eq!(split("\"a"), Err("unterminated double quote"));
        assert_eq!(split("\"a\\"), Err("unterminated double quote"));
    }

    #[test]
    fn quote_round_trips() {
        for word in [
            "a", "", "a b", "it's", "--x", "-x", "$HOME", "a\\", "\"", "é", "a\tb",
        ] {
            let quoted = quote(word);
            assert_eq!(split(&quoted).unwrap(), [word], "{word:?} -> {quoted:?}");
            assert!(!quoted.starts_with("--"));
            assert!(!quoted.ends_with('\\'));
        }
        assert_eq!(quote("src/main.rs"), "src/main.rs");
        assert_eq!(quote("my file"), "'my file'");
    }
}
