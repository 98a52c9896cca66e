//! The errors of a recipe.

use std::fmt;

use crate::{Keyword, MAX_INSTRUCTIONS, MAX_INSTRUCTION_BYTES, MAX_RECIPE_BYTES};

/// Everything wrong with a recipe, in line order (never empty when returned by [`crate::parse`]).
///
/// Displayed one error per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeErrors(pub Vec<RecipeError>);

impl RecipeErrors {
    /// The errors, in line order.
    pub fn iter(&self) -> std::slice::Iter<'_, RecipeError> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a RecipeErrors {
    type Item = &'a RecipeError;
    type IntoIter = std::slice::Iter<'a, RecipeError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for RecipeErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RecipeErrors {}

/// One error of a recipe: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeError {
    /// The 1-based line where the faulty instruction starts (for a NUL byte: the line that has
    /// it); 0 for an error of the recipe as a whole (too large, no instruction).
    pub line: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl RecipeError {
    /// An error at `line`.
    pub fn new(line: usize, kind: ErrorKind) -> RecipeError {
        RecipeError { line, kind }
    }
}

/// `line N: message`, or the message alone for line 0.
impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "line {}: {}", self.line, self.kind)
        }
    }
}

impl std::error::Error for RecipeError {}

/// What is wrong. Values quoted in the messages are cut to 60 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The text is larger than [`MAX_RECIPE_BYTES`]; nothing else is checked.
    #[error(
        "the recipe is {bytes} bytes, more than the limit of {MAX_RECIPE_BYTES} bytes (1 MiB)"
    )]
    TooLarge {
        /// The size of the text.
        bytes: usize,
    },
    /// There is no instruction, only blank and comment lines.
    #[error("the recipe has no instruction")]
    NoInstruction,
    /// The instruction is beyond [`MAX_INSTRUCTIONS`]; the rest of the recipe is not checked.
    #[error("more than {MAX_INSTRUCTIONS} instructions (the rest of the recipe is not checked)")]
    TooManyInstructions,
    /// The instruction, continuations joined, is longer than [`MAX_INSTRUCTION_BYTES`].
    #[error("the instruction is {bytes} bytes long, more than the limit of {MAX_INSTRUCTION_BYTES} bytes (64 KiB)")]
    InstructionTooLong {
        /// Its length, continuations joined.
        bytes: usize,
    },
    /// The line has a NUL byte.
    #[error("NUL byte in the line")]
    NulByte,
    /// The first word of the instruction is no keyword.
    #[error("unknown instruction `{}` (known: {})", shorten(.keyword), known_keywords())]
    UnknownInstruction {
        /// The word, as written.
        keyword: String,
    },
    /// An option the instruction does not take.
    #[error("unknown option `{}` for {keyword} ({})", shorten(.option), options_of(*.keyword))]
    UnknownOption {
        /// The instruction.
        keyword: Keyword,
        /// The option, with its `--`, without its value.
        option: String,
    },
    /// `--name` without `=value`.
    #[error("option `{option}` of {keyword} needs a value: {option}=VALUE")]
    OptionWithoutValue {
        /// The instruction.
        keyword: Keyword,
        /// The option, with its `--`.
        option: String,
    },
    /// The same option twice.
    #[error("option `{option}` of {keyword} given twice")]
    DuplicateOption {
        /// The instruction.
        keyword: Keyword,
        /// The option, with its `--`.
        option: String,
    },
    /// An option's value is not one it takes.
    #[error("bad value `{}` for option `{option}` of {keyword}: {reason}", shorten(.value))]
    BadOptionValue {
        /// The instruction.
        keyword: Keyword,
        /// The option, with its `--`.
        option: String,
        /// The value, as written.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
    /// The instruction lacks its arguments (`what` says which).
    #[error("{keyword} needs {what}")]
    MissingArgument {
        /// The instruction.
        keyword: Keyword,
        /// What it needs, e.g. "a command".
        what: &'static str,
    },
    /// `FROM` after another instruction.
    #[error("FROM must come before every other instruction")]
    FromNotFirst,
    /// A second `FROM` or `HEALTHCHECK`.
    #[error("{keyword} given twice (first at line {first_line}); a recipe has at most one")]
    Duplicate {
        /// The instruction.
        keyword: Keyword,
        /// Where the first one is.
        first_line: usize,
    },
    /// `FROM`'s argument is not a template name.
    #[error("`{}` is not a template name: 1 to 64 characters among a-z, 0-9, '.', '_' and '-', starting with a letter or a digit", shorten(.name))]
    BadTemplateName {
        /// The argument, as written.
        name: String,
    },
    /// `USER`'s argument is not a user name.
    #[error("`{}` is not a user name: 1 to 32 characters among a-z, 0-9, '_' and '-', starting with a letter or '_'", shorten(.name))]
    BadUserName {
        /// The argument, as written.
        name: String,
    },
    /// `ENV`'s argument has no `=`.
    #[error("ENV needs KEY=VALUE, `{}` has no `=`", shorten(.arg))]
    EnvWithoutEquals {
        /// The argument, as written.
        arg: String,
    },
    /// `ENV`'s key is not a variable name.
    #[error("`{}` is not a variable name: letters, digits and '_', not starting with a digit (one KEY=VALUE per ENV)", shorten(.key))]
    BadEnvKey {
        /// The key, as written.
        key: String,
    },
    /// `ENV`'s double-quoted value is malformed.
    #[error("bad ENV value: {reason}")]
    BadEnvValue {
        /// Why it is wrong.
        reason: &'static str,
    },
    /// The shell-like words of `COPY` or `WORKDIR` are malformed.
    #[error("bad quoting in {keyword}: {reason}")]
    BadQuoting {
        /// The instruction.
        keyword: Keyword,
        /// Why it is wrong.
        reason: &'static str,
    },
    /// `WORKDIR` with more than one word.
    #[error("WORKDIR takes one directory, not {count} words (quote a path that has blanks)")]
    WorkdirWords {
        /// How many words it has.
        count: usize,
    },
    /// A `COPY` source that is not a path inside the build context.
    #[error("COPY source `{}` {reason}", shorten(.path))]
    BadSource {
        /// The source, as written.
        path: String,
        /// Why it is wrong.
        reason: &'static str,
    },
    /// A `COPY` destination that is the empty word.
    #[error("COPY destination is empty")]
    EmptyDestination,
    /// `COPY` of several sources to a destination that does not end in `/`.
    #[error("COPY of several sources needs a directory destination ending in `/`, not `{}`", shorten(.dest))]
    DestinationNotDirectory {
        /// The destination, as written.
        dest: String,
    },
}

/// `s` cut to 60 characters (with `…` when cut), for messages.
fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

fn known_keywords() -> String {
    Keyword::ALL.map(Keyword::as_str).join(", ")
}

fn options_of(keyword: Keyword) -> String {
    match keyword.options() {
        [] => format!("{keyword} takes no option"),
        options => format!("{keyword} takes {}", options.join(", ")),
    }
}
