//! Properties: any text is parsed without a panic, and the canonical text of a recipe parses
//! back to the same recipe.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use wrenn_recipe::{
    parse, ErrorKind, Healthcheck, Recipe, Step, StepKind, MAX_DURATION, MAX_INSTRUCTION_BYTES,
    MAX_RECIPE_BYTES,
};

/// `recipe` with every line number 0.
fn without_lines(mut recipe: Recipe) -> Recipe {
    for step in &mut recipe.steps {
        step.line = 0;
    }
    if let Some(check) = &mut recipe.healthcheck {
        check.line = 0;
    }
    recipe
}

/// Parses `text` and checks what holds of every result; on success, also that the canonical
/// text parses back to the same recipe.
fn check(text: &str) -> Result<(), TestCaseError> {
    let lines = text.split('\n').count();
    match parse(text) {
        Ok(recipe) => {
            prop_assert!(
                recipe.from.is_some() || !recipe.steps.is_empty() || recipe.healthcheck.is_some()
            );
            let mut last = 0;
            for step in &recipe.steps {
                prop_assert!(step.line > last && step.line <= lines);
                last = step.line;
            }
            let canonical = recipe.to_text();
            match parse(&canonical) {
                Ok(again) => prop_assert_eq!(without_lines(again), without_lines(recipe)),
                // Resolved paths (a chain of relative WORKDIRs) and quoting can grow a text
                // that kept to a size limit past it: then only the size may be refused.
                Err(errors)
                    if canonical.len() > MAX_RECIPE_BYTES
                        || canonical.lines().any(|l| l.len() > MAX_INSTRUCTION_BYTES) =>
                {
                    prop_assert!(
                        errors.iter().all(|e| matches!(
                            e.kind,
                            ErrorKind::TooLarge { .. } | ErrorKind::InstructionTooLong { .. }
                        )),
                        "{}",
                        errors
                    );
                }
                Err(errors) => {
                    let shown: String = canonical.chars().take(300).collect();
                    return Err(TestCaseError::fail(format!(
                        "canonical text {shown:?}… does not parse: {errors}"
                    )));
                }
            }
        }
        Err(errors) => {
            prop_assert!(!errors.0.is_empty());
            let mut last = 0;
            for error in &errors {
                prop_assert!(error.line >= last && error.line <= lines, "{error}");
                last = error.line;
            }
            let display = errors.to_string();
            prop_assert_eq!(display.lines().count(), errors.0.len());
        }
    }
    Ok(())
}

/// A line made of recipe-ish pieces: keywords in any case, options, quotes, backslashes,
/// comments, blanks.
fn recipe_line() -> impl Strategy<Value = String> {
    let keyword = prop_oneof![
        Just("FROM"),
        Just("run"),
        Just("RUN"),
        Just("Env"),
        Just("ENV"),
        Just("WORKDIR"),
        Just("user"),
        Just("USER"),
        Just("COPY"),
        Just("START"),
        Just("HEALTHCHECK"),
        Just("#"),
        Just(""),
        Just("BOGUS"),
    ];
    let piece = prop_oneof![
        Just(" ".to_string()),
        Just("\t".to_string()),
        Just("\\".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("=".to_string()),
        Just("/".to_string()),
        Just("..".to_string()),
        Just("--".to_string()),
        Just("--timeout=5s ".to_string()),
        Just("--timeout=0s ".to_string()),
        Just("--interval=1m30s ".to_string()),
        Just("--start-period=0s ".to_string()),
        Just("--retries=3 ".to_string()),
        Just("--retries=0 ".to_string()),
        Just("\r".to_string()),
        "[a-z_]{1,6}",
        "[A-Z0-9.]{1,4}",
        any::<char>().prop_map(String::from),
    ];
    (keyword, vec((piece, any::<bool>()), 0..8)).prop_map(|(keyword, pieces)| {
        let mut line = keyword.to_string();
        if !keyword.is_empty() {
            line.push(' ');
        }
        for (piece, blank) in pieces {
            line.push_str(&piece);
            if blank {
                line.push(' ');
            }
        }
        line
    })
}

proptest! {
    #[test]
    fn any_string_is_parsed_without_panic(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn any_bytes_are_parsed_without_panic(bytes in vec(any::<u8>(), 0..2048)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn recipe_like_text_is_parsed_without_panic(
        lines in vec(recipe_line(), 0..40),
        crlf in any::<bool>(),
    ) {
        check(&lines.join(if crlf { "\r\n" } else { "\n" }))?;
    }

    #[test]
    fn long_lines_and_many_lines(
        line in recipe_line(),
        repeat in prop_oneof![1usize..10, 60_000usize..70_000],
        lines in prop_oneof![1usize..10, 990usize..1010, 100_000usize..200_000],
    ) {
        let long = format!("{line}{}", "x".repeat(repeat));
        check(&format!("{long}\n").repeat(lines.min((1 << 21) / (long.len() + 1)).max(1)))?;
    }
}

proptest! {
    // Few lines, so that some of them parse (about one in 15): their canonical text must parse
    // back to the same recipe (`check`).
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn parsed_text_round_trips(lines in vec(recipe_line(), 1..5)) {
        check(&lines.join("\n"))?;
    }
}

// The strategy of valid recipes: values as `parse` produces them.

fn trimmed(text: String) -> Option<String> {
    let trimmed = text.trim_matches([' ', '\t', '\r']);
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

fn command() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z -]{1,20}",
        "[-a-z \\\\\"'$&|;#=]{1,20}",
        "[^\n\0]{1,20}",
    ]
    .prop_filter_map("blank command", trimmed)
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9._-]{1,8}", "[^/\n\0]{1,8}"]
        .prop_filter("dot component", |c| c != "." && c != "..")
}

fn absolute() -> impl Strategy<Value = String> {
    vec(component(), 0..4).prop_map(|parts| format!("/{}", parts.join("/")))
}

fn relative() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(".".to_string()),
        5 => vec(component(), 1..4).prop_map(|parts| parts.join("/")),
    ]
}

fn duration(min_millis: u64) -> impl Strategy<Value = Duration> {
    let max = MAX_DURATION.as_millis() as u64;
    prop_oneof![
        (min_millis..=max).prop_map(Duration::from_millis),
        (min_millis.div_ceil(1000)..=max / 1000).prop_map(Duration::from_secs),
    ]
}

fn step_kind() -> impl Strategy<Value = StepKind> {
    prop_oneof![
        (command(), duration(1)).prop_map(|(command, timeout)| StepKind::Run { command, timeout }),
        (
            "[A-Za-z_][A-Za-z0-9_]{0,8}",
            prop_oneof!["[a-z =:/]{0,10}", "[ \t\r\"\\\\a=]{0,10}", "[^\n\0]{0,10}"],
        )
            .prop_map(|(key, value)| StepKind::Env { key, value }),
        absolute().prop_map(|dir| StepKind::Workdir { dir }),
        "[a-z_][a-z0-9_-]{0,31}".prop_map(|name| StepKind::User { name }),
        (vec(relative(), 1..4), absolute(), any::<bool>()).prop_map(
            |(sources, dest, dest_is_dir)| {
                let dest_is_dir = dest_is_dir || sources.len() > 1 || dest == "/";
                StepKind::Copy {
                    sources,
                    dest,
                    dest_is_dir,
                }
            }
        ),
        command().prop_map(|command| StepKind::Start { command }),
    ]
}

fn healthcheck() -> impl Strategy<Value = Healthcheck> {
    (command(), duration(1), duration(1), duration(0), 1u32..).prop_map(
        |(command, interval, timeout, start_period, retries)| Healthcheck {
            line: 0,
            command,
            interval,
            timeout,
            start_period,
            retries,
        },
    )
}

fn recipe() -> impl Strategy<Value = Recipe> {
    (
        proptest::option::of("[a-z0-9][a-z0-9._-]{0,63}"),
        vec(step_kind(), 0..20),
        proptest::option::of(healthcheck()),
    )
        .prop_map(|(from, kinds, healthcheck)| Recipe {
            from,
            steps: kinds
                .into_iter()
                .map(|kind| Step { line: 0, kind })
                .collect(),
            healthcheck,
        })
        .prop_filter("no instruction", |r| {
            r.from.is_some() || !r.steps.is_empty() || r.healthcheck.is_some()
        })
}

proptest! {
    #[test]
    fn canonical_text_parses_back(recipe in recipe()) {
        let text = recipe.to_text();
        match parse(&text) {
            Ok(parsed) => prop_assert_eq!(without_lines(parsed), recipe),
            Err(errors) => {
                return Err(TestCaseError::fail(format!("{text:?} does not parse: {errors}")))
            }
        }
    }

    #[test]
    fn canonical_text_is_canonical(recipe in recipe()) {
        let text = recipe.to_text();
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.to_text(), text);
    }
}
