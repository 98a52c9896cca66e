//! From text to [`Recipe`].

use std::time::Duration;

use crate::error::{ErrorKind, RecipeError, RecipeErrors};
use crate::words::{self, is_blank, BLANKS};
use crate::{
    duration, path, Healthcheck, Keyword, Recipe, Step, StepKind, DEFAULT_RUN_TIMEOUT,
    MAX_DURATION, MAX_INSTRUCTIONS, MAX_INSTRUCTION_BYTES, MAX_RECIPE_BYTES,
};

/// Parses a recipe, or returns every error found in it (see the crate documentation).
///
/// Lines end in `\n`; a `\r` before it is ignored. Only a text larger than
/// [`MAX_RECIPE_BYTES`] and an instruction beyond [`MAX_INSTRUCTIONS`] stop the checking:
/// otherwise each instruction is checked on its own, a wrong one being left out of the
/// context of the next ones (a wrong `WORKDIR` does not change the directory).
pub fn parse(text: &str) -> Result<Recipe, RecipeErrors> {
    if text.len() > MAX_RECIPE_BYTES {
        return Err(RecipeErrors(vec![RecipeError::new(
            0,
            ErrorKind::TooLarge { bytes: text.len() },
        )]));
    }
    let mut parser = Parser::new();
    let mut pending: Option<Pending> = None;
    for (index, raw) in text.split('\n').enumerate() {
        let number = index + 1;
        let line = raw.trim_end_matches('\r');
        let nul = line.contains('\0');
        if nul {
            parser.error(number, ErrorKind::NulByte);
        }
        let mut instruction = match pending.take() {
            Some(instruction) => instruction,
            None => {
                let start = line.trim_start_matches(BLANKS);
                if start.is_empty() || start.starts_with('#') {
                    continue;
                }
                Pending {
                    line: number,
                    text: String::new(),
                    nul: false,
                }
            }
        };
        instruction.nul |= nul;
        match line.strip_suffix('\\') {
            Some(head) => {
                instruction.text.push_str(head);
                instruction.text.push(' ');
                pending = Some(instruction);
            }
            None => {
                instruction.text.push_str(line);
                if !parser.instruction(instruction) {
                    break;
                }
            }
        }
    }
    if let Some(instruction) = pending {
        parser.instruction(instruction);
    }
    parser.finish()
}

/// An instruction, its continuation lines joined.
struct Pending {
    /// Where it starts.
    line: usize,
    text: String,
    /// One of its lines has a NUL byte (already reported).
    nul: bool,
}

struct Parser {
    errors: Vec<RecipeError>,
    from: Option<String>,
    from_line: Option<usize>,
    steps: Vec<Step>,
    healthcheck: Option<Healthcheck>,
    healthcheck_line: Option<usize>,
    /// The working directory the instructions so far leave.
    workdir: String,
    /// Instructions seen, good or bad.
    instructions: usize,
    /// An instruction other than `FROM` has been seen.
    other_seen: bool,
    /// Too many instructions: the rest is not looked at.
    stopped: bool,
}

impl Parser {
    fn new() -> Parser {
        Parser {
            errors: Vec::new(),
            from: None,
            from_line: None,
            steps: Vec::new(),
            healthcheck: None,
            healthcheck_line: None,
            workdir: "/".to_string(),
            instructions: 0,
            other_seen: false,
            stopped: false,
        }
    }

    fn error(&mut self, line: usize, kind: ErrorKind) {
        self.errors.push(RecipeError::new(line, kind));
    }

    /// Checks one instruction; false once the parser stopped.
    fn instruction(&mut self, instruction: Pending) -> bool {
        if self.stopped {
            return false;
        }
        // Only a lone `\` and blanks: like an empty line.
        if !instruction.nul && instruction.text.trim_matches(BLANKS).is_empty() {
            return true;
        }
        self.instructions += 1;
        if self.instructions > MAX_INSTRUCTIONS {
            self.error(instruction.line, ErrorKind::TooManyInstructions);
            self.stopped = true;
            return false;
        }
        if instruction.nul {
            return true;
        }
        if instruction.text.len() > MAX_INSTRUCTION_BYTES {
            self.error(
                instruction.line,
                ErrorKind::InstructionTooLong {
                    bytes: instruction.text.len(),
                },
            );
            return true;
        }
        self.parse_instruction(instruction.line, instruction.text.trim_matches(BLANKS));
        true
    }

    fn finish(mut self) -> Result<Recipe, RecipeErrors> {
        if self.instructions == 0 {
            self.error(0, ErrorKind::NoInstruction);
        }
        if self.errors.is_empty() {
            Ok(Recipe {
                from: self.from,
                steps: self.steps,
                healthcheck: self.healthcheck,
            })
        } else {
            self.errors.sort_by_key(|error| error.line);
            Err(RecipeErrors(self.errors))
        }
    }

    /// Checks the instruction `text` (trimmed, non-empty) that starts at `line`.
    fn parse_instruction(&mut self, line: usize, text: &str) {
        let (word, rest) = first_word(text);
        let Some(keyword) = Keyword::from_word(word) else {
            self.error(
                line,
                ErrorKind::UnknownInstruction {
                    keyword: word.to_string(),
                },
            );
            return;
        };
        let errors_before = self.errors.len();
        match keyword {
            Keyword::From => {
                if let Some(first_line) = self.from_line {
                    self.error(
                        line,
                        ErrorKind::Duplicate {
                            keyword,
                            first_line,
                        },
                    );
                } else if self.other_seen {
                    self.error(line, ErrorKind::FromNotFirst);
                }
                self.from_line.get_or_insert(line);
            }
            Keyword::Healthcheck => {
                if let Some(first_line) = self.healthcheck_line {
                    self.error(
                        line,
                        ErrorKind::Duplicate {
                            keyword,
                            first_line,
                        },
                    );
                }
                self.healthcheck_line.get_or_insert(line);
                self.other_seen = true;
            }
            _ => self.other_seen = true,
        }
        let (options, args) = self.options(line, keyword, rest);
        let kind = match keyword {
            Keyword::From => {
                if args.is_empty() {
                    self.missing(line, keyword, "a template name");
                } else if !is_template_name(args) {
                    self.error(
                        line,
                        ErrorKind::BadTemplateName {
                            name: args.to_string(),
                        },
                    );
                } else if self.errors.len() == errors_before {
                    self.from = Some(args.to_string());
                }
                return;
            }
            Keyword::Run => {
                let mut timeout = Some(DEFAULT_RUN_TIMEOUT);
                for (option, value) in options {
                    timeout = self.duration(line, keyword, option, value, false);
                }
                let command = self.command(line, keyword, args);
                match (command, timeout) {
                    (Some(command), Some(timeout)) => StepKind::Run { command, timeout },
                    _ => return,
                }
            }
            Keyword::Env => match self.env(line, args) {
                Some(kind) => kind,
                None => return,
            },
            Keyword::Workdir => {
                let Some(words) = self.words(line, keyword, args) else {
                    return;
                };
                match words.as_slice() {
                    [dir] if !dir.is_empty() => {
                        let dir = path::resolve(&self.workdir, dir);
                        if self.errors.len() == errors_before {
                            self.workdir.clone_from(&dir);
                        }
                        StepKind::Workdir { dir }
                    }
                    [] | [_] => {
                        self.missing(line, keyword, "a directory");
                        return;
                    }
                    words => {
                        let count = words.len();
                        self.error(line, ErrorKind::WorkdirWords { count });
                        return;
                    }
                }
            }
            Keyword::User => {
                if args.is_empty() {
                    self.missing(line, keyword, "a user name");
                    return;
                }
                if !is_user_name(args) {
                    let name = args.to_string();
                    self.error(line, ErrorKind::BadUserName { name });
                    return;
                }
                StepKind::User {
                    name: args.to_string(),
                }
            }
            Keyword::Copy => match self.copy(line, args) {
                Some(kind) => kind,
                None => return,
            },
            Keyword::Start => match self.command(line, keyword, args) {
                Some(command) => StepKind::Start { command },
                None => return,
            },
            Keyword::Healthcheck => {
                self.healthcheck(line, errors_before, &options, args);
                return;
            }
        };
        if self.errors.len() == errors_before {
            self.steps.push(Step { line, kind });
        }
    }

    /// Splits the leading options off `rest`, reporting unknown, valueless and repeated ones;
    /// returns the good ones (name, value) and the arguments after them.
    fn options<'t>(
        &mut self,
        line: usize,
        keyword: Keyword,
        mut rest: &'t str,
    ) -> (Vec<(&'static str, &'t str)>, &'t str) {
        let mut options: Vec<(&'static str, &'t str)> = Vec::new();
        while rest.starts_with("--") {
            let (word, after) = first_word(rest);
            rest = after;
            if word == "--" {
                break;
            }
            let (name, value) = match word.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (word, None),
            };
            let Some(known) = keyword.options().iter().find(|known| **known == name) else {
                let option = name.to_string();
                self.error(line, ErrorKind::UnknownOption { keyword, option });
                continue;
            };
            let option = known.to_string();
            let Some(value) = value else {
                self.error(line, ErrorKind::OptionWithoutValue { keyword, option });
                continue;
            };
            if options.iter().any(|(seen, _)| seen == known) {
                self.error(line, ErrorKind::DuplicateOption { keyword, option });
                continue;
            }
            options.push((known, value));
        }
        (options, rest)
    }

    fn missing(&mut self, line: usize, keyword: Keyword, what: &'static str) {
        self.error(line, ErrorKind::MissingArgument { keyword, what });
    }

    fn bad_option(
        &mut self,
        line: usize,
        keyword: Keyword,
        option: &str,
        value: &str,
        reason: String,
    ) {
        self.error(
            line,
            ErrorKind::BadOptionValue {
                keyword,
                option: option.to_string(),
                value: value.to_string(),
                reason,
            },
        );
    }

    /// The duration `value` of `option`, in `(0, MAX_DURATION]` (`[0, MAX_DURATION]` with
    /// `zero_ok`).
    fn duration(
        &mut self,
        line: usize,
        keyword: Keyword,
        option: &str,
        value: &str,
        zero_ok: bool,
    ) -> Option<Duration> {
        let reason = match duration::parse(value) {
            Ok(d) if d.is_zero() && !zero_ok => "must be more than 0".to_string(),
            Ok(d) if d > MAX_DURATION => format!(
                "more than the maximum of {}",
                duration::format(MAX_DURATION)
            ),
            Ok(d) => return Some(d),
            Err(reason) => reason,
        };
        self.bad_option(line, keyword, option, value, reason);
        None
    }

    fn command(&mut self, line: usize, keyword: Keyword, args: &str) -> Option<String> {
        if args.is_empty() {
            self.missing(line, keyword, "a command");
            return None;
        }
        Some(args.to_string())
    }

    fn words(&mut self, line: usize, keyword: Keyword, args: &str) -> Option<Vec<String>> {
        match words::split(args) {
            Ok(words) => Some(words),
            Err(reason) => {
                self.error(line, ErrorKind::BadQuoting { keyword, reason });
                None
            }
        }
    }

    fn env(&mut self, line: usize, args: &str) -> Option<StepKind> {
        if args.is_empty() {
            self.missing(line, Keyword::Env, "KEY=VALUE");
            return None;
        }
        let Some((key, value)) = args.split_once('=') else {
            let arg = args.to_string();
            self.error(line, ErrorKind::EnvWithoutEquals { arg });
            return None;
        };
        let mut good = true;
        if !is_env_key(key) {
            let key = key.to_string();
            self.error(line, ErrorKind::BadEnvKey { key });
            good = false;
        }
        let value = if value.starts_with('"') {
            match unquote_env_value(value) {
                Ok(value) => value,
                Err(reason) => {
                    self.error(line, ErrorKind::BadEnvValue { reason });
                    return None;
                }
            }
        } else {
            value.to_string()
        };
        good.then(|| StepKind::Env {
            key: key.to_string(),
            value,
        })
    }

    fn copy(&mut self, line: usize, args: &str) -> Option<StepKind> {
        let words = self.words(line, Keyword::Copy, args)?;
        let Some((dest, sources)) = words
            .split_last()
            .filter(|(_, sources)| !sources.is_empty())
        else {
            self.missing(line, Keyword::Copy, "at least one source and a destination");
            return None;
        };
        let errors_before = self.errors.len();
        let mut normalised = Vec::with_capacity(sources.len());
        for source in sources {
            match path::context_path(source) {
                Ok(source) => normalised.push(source),
                Err(reason) => {
                    let path = source.clone();
                    self.error(line, ErrorKind::BadSource { path, reason });
                }
            }
        }
        let dest_is_dir = dest.ends_with('/')
            || matches!(dest.rsplit('/').next(), Some("." | ".."))
            || path::resolve(&self.workdir, dest) == "/";
        if dest.is_empty() {
            self.error(line, ErrorKind::EmptyDestination);
        } else if sources.len() > 1 && !dest_is_dir {
            let dest = dest.clone();
            self.error(line, ErrorKind::DestinationNotDirectory { dest });
        }
        (self.errors.len() == errors_before).then(|| StepKind::Copy {
            sources: normalised,
            dest: path::resolve(&self.workdir, dest),
            dest_is_dir,
        })
    }

    fn healthcheck(
        &mut self,
        line: usize,
        errors_before: usize,
        options: &[(&'static str, &str)],
        args: &str,
    ) {
        let keyword = Keyword::Healthcheck;
        let mut check = Healthcheck::new(args);
        check.line = line;
        for &(option, value) in options {
            let zero_ok = option == "--start-period";
            let slot = match option {
                "--interval" => &mut check.interval,
                "--timeout" => &mut check.timeout,
                "--start-period" => &mut check.start_period,
                _ => {
                    match value.parse::<u32>() {
                        Ok(0) => {
                            let reason = "must be at least 1".to_string();
                            self.bad_option(line, keyword, option, value, reason);
                        }
                        Ok(retries) => check.retries = retries,
                        Err(_) => {
                            let reason = format!("not a whole number from 1 to {}", u32::MAX);
                            self.bad_option(line, keyword, option, value, reason);
                        }
                    }
                    continue;
                }
            };
            if let Some(d) = self.duration(line, keyword, option, value, zero_ok) {
                *slot = d;
            }
        }
        self.command(line, keyword, args);
        if self.errors.len() == errors_before {
            self.healthcheck = Some(check);
        }
    }
}

/// The first word of `text` (up to a blank) and the rest, its leading blanks removed.
fn first_word(text: &str) -> (&str, &str) {
    match text.find(is_blank) {
        Some(end) => (&text[..end], text[end..].trim_start_matches(BLANKS)),
        None => (text, ""),
    }
}

/// `[a-z0-9][a-z0-9._-]{0,63}`
fn is_template_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=64).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// `[a-z_][a-z0-9_-]{0,31}`
fn is_user_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=32).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
}

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_env_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    !bytes.is_empty()
        && !bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The value inside `value`'s double quotes (`value` starts with one): `\"` and `\\` are a
/// quote and a backslash, any other backslash stays; the closing quote must end the value.
fn unquote_env_value(value: &str) -> Result<String, &'static str> {
    let mut unquoted = String::with_capacity(value.len());
    let mut chars = value.chars().skip(1);
    crate::words::take_double_quoted(&mut chars, &mut unquoted)?;
    if chars.next().is_some() {
        return Err("text after the closing double quote (a quoted value must be quoted whole)");
    }
    Ok(unquoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_template_name("minimal"));
        assert!(is_template_name("py3.12-slim_x"));
        assert!(is_template_name("0"));
        assert!(is_template_name(&"a".repeat(64)));
        assert!(!is_template_name(&"a".repeat(65)));
        for bad in ["", "Minimal", "-a", ".a", "_a", "a b", "a/b", "é"] {
            assert!(!is_template_name(bad), "{bad:?}");
        }
        assert!(is_user_name("root"));
        assert!(is_user_name("_apt"));
        assert!(is_user_name("www-data"));
        assert!(is_user_name(&"u".repeat(32)));
        assert!(!is_user_name(&"u".repeat(33)));
        for bad in ["", "Root", "1user", "-u", "a.b", "a b"] {
            assert!(!is_user_name(bad), "{bad:?}");
        }
        assert!(is_env_key("PATH"));
        assert!(is_env_key("_x1"));
        for bad in ["", "1A", "A-B", "A B", "É"] {
            assert!(!is_env_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn env_values() {
        assert_eq!(
            unquote_env_value(r#""a \"b\" \\ \n""#).unwrap(),
            r#"a "b" \ \n"#
        );
        assert_eq!(unquote_env_value(r#""""#).unwrap(), "");
        assert!(unquote_env_value(r#"""#).is_err());
        assert!(unquote_env_value(r#""a\""#).is_err());
        assert!(unquote_env_value(r#""a" b"#).is_err());
    }

    #[test]
    fn first_words() {
        assert_eq!(first_word("RUN \t echo  x"), ("RUN", "echo  x"));
        assert_eq!(first_word("RUN"), ("RUN", ""));
    }
}
