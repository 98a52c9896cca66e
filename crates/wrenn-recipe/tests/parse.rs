//! The recipe format, instruction by instruction, and every error it reports.

use std::collections::BTreeMap;
use std::time::Duration;

use wrenn_recipe::{
    parse, Context, ErrorKind, Healthcheck, Keyword, Recipe, RecipeError, Step, StepKind,
    DEFAULT_RUN_TIMEOUT, MAX_INSTRUCTIONS, MAX_INSTRUCTION_BYTES, MAX_RECIPE_BYTES,
};

fn ok(text: &str) -> Recipe {
    match parse(text) {
        Ok(recipe) => recipe,
        Err(errors) => panic!("{text:?} did not parse:\n{errors}"),
    }
}

fn errors(text: &str) -> Vec<RecipeError> {
    match parse(text) {
        Ok(recipe) => panic!("{text:?} parsed: {recipe:?}"),
        Err(errors) => errors.0,
    }
}

/// The only error of `text`, checked to be at `line` and to mention every `words`.
fn error(text: &str, line: usize, words: &[&str]) -> ErrorKind {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "{text:?}: {all:?}");
    let error = all.remove(0);
    assert_eq!(error.line, line, "{text:?}: {error}");
    let message = error.to_string();
    for word in words {
        assert!(
            message.contains(word),
            "{text:?}: {message:?} lacks {word:?}"
        );
    }
    error.kind
}

fn kinds(recipe: &Recipe) -> Vec<StepKind> {
    recipe.steps.iter().map(|step| step.kind.clone()).collect()
}

fn one_step(text: &str) -> StepKind {
    let recipe = ok(text);
    assert_eq!(recipe.steps.len(), 1, "{text:?}");
    recipe.steps[0].kind.clone()
}

fn run(command: &str) -> StepKind {
    StepKind::Run {
        command: command.into(),
        timeout: DEFAULT_RUN_TIMEOUT,
    }
}

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

const EXAMPLE: &str = r#"# Build a small web app template.
FROM python3.12

ENV APP_HOME=/srv/app
ENV GREETING="hello \"world\""
WORKDIR /srv/app
USER root
COPY requirements.txt "static files" ./
COPY app.py app/main.py
RUN --timeout=15m pip install \
      -r requirements.txt
USER app
START python -m http.server 8000
HEALTHCHECK --interval=2s --timeout=1s --start-period=30s --retries=10 \
    curl -fs http://localhost:8000/
"#;

#[test]
fn every_instruction_with_options() {
    let recipe = ok(EXAMPLE);
    assert_eq!(recipe.from.as_deref(), Some("python3.12"));
    assert_eq!(recipe.base(), "python3.12");
    let lines: Vec<usize> = recipe.steps.iter().map(|step| step.line).collect();
    assert_eq!(lines, [4, 5, 6, 7, 8, 9, 10, 12, 13]);
    assert_eq!(
        kinds(&recipe),
        [
            StepKind::Env {
                key: "APP_HOME".into(),
                value: "/srv/app".into()
            },
            StepKind::Env {
                key: "GREETING".into(),
                value: r#"hello "world""#.into()
            },
            StepKind::Workdir {
                dir: "/srv/app".into()
            },
            StepKind::User {
                name: "root".into()
            },
            StepKind::Copy {
                sources: vec!["requirements.txt".into(), "static files".into()],
                dest: "/srv/app".into(),
                dest_is_dir: true,
            },
            StepKind::Copy {
                sources: vec!["app.py".into()],
                dest: "/srv/app/app/main.py".into(),
                dest_is_dir: false,
            },
            StepKind::Run {
                command: "pip install        -r requirements.txt".into(),
                timeout: s(15 * 60),
            },
            StepKind::User { name: "app".into() },
            StepKind::Start {
                command: "python -m http.server 8000".into()
            },
        ]
    );
    assert_eq!(
        recipe.healthcheck,
        Some(Healthcheck {
            line: 14,
            command: "curl -fs http://localhost:8000/".into(),
            interval: s(2),
            timeout: s(1),
            start_period: s(30),
            retries: 10,
        })
    );
    assert_eq!(
        recipe.copy_sources().collect::<Vec<_>>(),
        ["requirements.txt", "static files", "app.py"]
    );
}

#[test]
fn keywords_are_case_insensitive() {
    let recipe = ok("from base\nrun a\nRun b\nrUN c\nenv K=v\nworkdir /x\nuser u\ncopy a b\nstart s\nhealthcheck h");
    assert_eq!(recipe.from.as_deref(), Some("base"));
    assert_eq!(recipe.steps.len(), 8);
    assert_eq!(recipe.steps[1].kind, run("b"));
    assert_eq!(recipe.healthcheck.map(|h| h.command), Some("h".into()));
    // ...but option names and values are not.
    error("RUN --TIMEOUT=5s x", 1, &["--TIMEOUT"]);
}

#[test]
fn comments_blank_lines_and_blanks() {
    let recipe = ok(
        "\n# comment\n   # indented comment\n\t\n  RUN   echo  a # not a comment  \n\n#RUN no\n",
    );
    assert_eq!(recipe.steps.len(), 1);
    assert_eq!(recipe.steps[0].line, 5);
    assert_eq!(recipe.steps[0].kind, run("echo  a # not a comment"));
    // Tabs separate the keyword too; CRLF line ends are fine.
    assert_eq!(one_step("RUN\techo\r\n"), run("echo"));
    // A comment line ending in a backslash does not continue.
    assert_eq!(ok("# comment \\\nRUN x").steps[0].line, 2);
}

#[test]
fn continuations() {
    // The backslash and the newline become one space; the next line is taken as it is.
    assert_eq!(one_step("RUN a \\\n  b\\\nc"), run("a    b c"));
    assert_eq!(one_step("RUN a \\\r\n b\r\n"), run("a   b"));
    assert_eq!(
        one_step("RUN a \\\n# still part of RUN"),
        run("a  # still part of RUN")
    );
    // A blank line ends it; so does the end of the text.
    assert_eq!(kinds(&ok("RUN a \\\n\nRUN b")), [run("a"), run("b")]);
    assert_eq!(one_step("RUN a \\"), run("a"));
    // A line of a lone backslash, continued by a blank line, is no instruction.
    assert_eq!(ok("\\\n\nRUN a").steps[0].line, 3);
    assert_eq!(errors("  \\\n")[0].kind, ErrorKind::NoInstruction);
    // The joining space counts: `RU\` + `N x` is the unknown instruction `RU`.
    error("RU\\\nN x", 1, &["unknown instruction `RU`"]);
    // Errors name the line where the instruction starts, and later lines are counted right.
    let all = errors("RUN a \\\n b \\\n c\nBAD\nRUN \\\n\n\nRUN --timeout=5 \\\n x");
    let lines: Vec<usize> = all.iter().map(|e| e.line).collect();
    assert_eq!(lines, [4, 5, 8], "{all:?}");
}

#[test]
fn from() {
    assert_eq!(ok("RUN x").from, None);
    assert_eq!(ok("RUN x").base(), "minimal");
    assert_eq!(ok("# c\n\nFROM ubuntu-24.04\nRUN x").base(), "ubuntu-24.04");
    assert_eq!(ok("FROM minimal").steps, []);
    let kind = error("RUN x\nFROM base", 2, &["FROM must come before"]);
    assert_eq!(kind, ErrorKind::FromNotFirst);
    let kind = error("FROM a\nFROM b", 2, &["FROM given twice", "line 1"]);
    assert_eq!(
        kind,
        ErrorKind::Duplicate {
            keyword: Keyword::From,
            first_line: 1
        }
    );
    error("FROM", 1, &["FROM needs a template name"]);
    error("FROM Ubuntu", 1, &["`Ubuntu` is not a template name"]);
    error("FROM a b", 1, &["`a b` is not a template name"]);
    error("FROM -a", 1, &["`-a`"]);
    error(
        &format!("FROM {}", "a".repeat(65)),
        1,
        &["not a template name"],
    );
    error(
        "FROM --x=1 base",
        1,
        &["unknown option `--x` for FROM", "takes no option"],
    );
}

#[test]
fn run_and_its_timeout() {
    assert_eq!(one_step("RUN apt-get update"), run("apt-get update"));
    let timeout = |text: &str| match one_step(text) {
        StepKind::Run { timeout, .. } => timeout,
        other => panic!("{other:?}"),
    };
    assert_eq!(timeout("RUN x"), s(600));
    assert_eq!(timeout("RUN --timeout=500ms x"), Duration::from_millis(500));
    assert_eq!(timeout("RUN --timeout=1m30s x"), s(90));
    assert_eq!(timeout("RUN --timeout=2h x"), s(7200));
    assert_eq!(timeout("RUN --timeout=120m x"), s(7200));
    // Options come right after the keyword: later ones are part of the command.
    assert_eq!(
        one_step("RUN --timeout=1s echo --timeout=5"),
        StepKind::Run {
            command: "echo --timeout=5".into(),
            timeout: s(1)
        }
    );
    // `--` ends the options.
    assert_eq!(one_step("RUN -- --version"), run("--version"));
    assert_eq!(
        one_step("RUN --timeout=3s -- --x"),
        StepKind::Run {
            command: "--x".into(),
            timeout: s(3)
        }
    );
    error("RUN", 1, &["RUN needs a command"]);
    error("RUN   ", 1, &["RUN needs a command"]);
    error("RUN --timeout=5s", 1, &["RUN needs a command"]);
    error("RUN --", 1, &["RUN needs a command"]);
}

#[test]
fn bad_durations() {
    for (value, words) in [
        ("5", &["missing unit"][..]),
        ("", &["empty duration"]),
        ("0s", &["must be more than 0"]),
        ("0ms", &["must be more than 0"]),
        ("2h1ms", &["more than the maximum of 2h"]),
        ("3h", &["maximum"]),
        ("5d", &["unknown unit `d`"]),
        ("1.5s", &["unknown unit `.`"]),
        ("-1s", &["whole number"]),
        ("99999999999999999999h", &["too large"]),
    ] {
        let text = format!("RUN --timeout={value} x");
        let kind = error(&text, 1, &["`--timeout`", "RUN"]);
        let ErrorKind::BadOptionValue { reason, .. } = &kind else {
            panic!("{text:?}: {kind:?}");
        };
        for word in words {
            assert!(reason.contains(word), "{text:?}: {reason:?} lacks {word:?}");
        }
    }
}

#[test]
fn option_errors() {
    let kind = error(
        "RUN --foo=1 x",
        1,
        &["unknown option `--foo` for RUN", "--timeout"],
    );
    assert_eq!(
        kind,
        ErrorKind::UnknownOption {
            keyword: Keyword::Run,
            option: "--foo".into()
        }
    );
    error("RUN --foo x", 1, &["unknown option `--foo`"]);
    let kind = error(
        "RUN --timeout 5s x",
        1,
        &["`--timeout` of RUN needs a value"],
    );
    assert!(matches!(kind, ErrorKind::OptionWithoutValue { .. }));
    let kind = error(
        "RUN --timeout=1s --timeout=2s x",
        1,
        &["`--timeout`", "twice"],
    );
    assert!(matches!(kind, ErrorKind::DuplicateOption { .. }));
    error(
        "START --timeout=1s x",
        1,
        &[
            "unknown option `--timeout` for START",
            "START takes no option",
        ],
    );
    error("ENV --x=1 A=b", 1, &["unknown option `--x` for ENV"]);
    error("WORKDIR --x /a", 1, &["for WORKDIR"]);
    error("USER --x root", 1, &["for USER"]);
    error(
        "COPY --chown=u a b",
        1,
        &["unknown option `--chown` for COPY"],
    );
    error(
        "HEALTHCHECK --retry=3 x",
        1,
        &["unknown option `--retry` for HEALTHCHECK", "--retries"],
    );
    // A quoted COPY source that starts with `--` is no option.
    assert_eq!(
        one_step("COPY '--x' /y"),
        StepKind::Copy {
            sources: vec!["--x".into()],
            dest: "/y".into(),
            dest_is_dir: false
        }
    );
}

#[test]
fn env() {
    let env = |text: &str| match one_step(text) {
        StepKind::Env { key, value } => (key, value),
        other => panic!("{other:?}"),
    };
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(env("ENV PATH=/usr/bin:/bin"), pair("PATH", "/usr/bin:/bin"));
    assert_eq!(env("ENV _x1="), pair("_x1", ""));
    assert_eq!(env("ENV A=b=c d  e "), pair("A", "b=c d  e"));
    assert_eq!(env("ENV A=  lead"), pair("A", "  lead"));
    assert_eq!(env("ENV A='single' $B"), pair("A", "'single' $B"));
    assert_eq!(env(r#"ENV A="x y ""#), pair("A", "x y "));
    assert_eq!(env(r#"ENV A="q\"b\\n\t""#), pair("A", r#"q"b\n\t"#));
    assert_eq!(env(r#"ENV A="""#), pair("A", ""));
    assert_eq!(env(r#"ENV A=x"y""#), pair("A", r#"x"y""#));
    error("ENV", 1, &["ENV needs KEY=VALUE"]);
    let kind = error("ENV A b", 1, &["ENV needs KEY=VALUE", "`A b` has no `=`"]);
    assert!(matches!(kind, ErrorKind::EnvWithoutEquals { .. }));
    error("ENV =x", 1, &["`` is not a variable name"]);
    error("ENV 1A=x", 1, &["`1A` is not a variable name"]);
    error("ENV A-B=x", 1, &["`A-B` is not a variable name"]);
    error(
        "ENV A B=x",
        1,
        &["`A B` is not a variable name", "one KEY=VALUE"],
    );
    error(
        r#"ENV A="x"#,
        1,
        &["bad ENV value", "unterminated double quote"],
    );
    error(
        r#"ENV A="x" y"#,
        1,
        &["bad ENV value", "after the closing double quote"],
    );
}

#[test]
fn workdir() {
    let dirs = |text: &str| -> Vec<String> {
        ok(text)
            .steps
            .into_iter()
            .map(|step| match step.kind {
                StepKind::Workdir { dir } => dir,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(dirs("WORKDIR /srv/app"), ["/srv/app"]);
    assert_eq!(dirs("WORKDIR srv"), ["/srv"]);
    assert_eq!(
        dirs("WORKDIR /a\nWORKDIR b/c\nWORKDIR ../d"),
        ["/a", "/a/b/c", "/a/b/d"]
    );
    assert_eq!(dirs("WORKDIR //a/./b//\nWORKDIR ."), ["/a/b", "/a/b"]);
    assert_eq!(dirs("WORKDIR /a\nWORKDIR ../../.."), ["/a", "/"]);
    assert_eq!(dirs("WORKDIR /\nWORKDIR .."), ["/", "/"]);
    assert_eq!(dirs(r#"WORKDIR "/my dir"/x"#), ["/my dir/x"]);
    assert_eq!(dirs(r"WORKDIR /a\ b"), ["/a b"]);
    assert_eq!(dirs("WORKDIR '$HOME'"), ["/$HOME"]);
    error("WORKDIR", 1, &["WORKDIR needs a directory"]);
    error("WORKDIR ''", 1, &["WORKDIR needs a directory"]);
    let kind = error(
        "WORKDIR /my dir",
        1,
        &["WORKDIR takes one directory", "2 words"],
    );
    assert_eq!(kind, ErrorKind::WorkdirWords { count: 2 });
    error(
        "WORKDIR '/a",
        1,
        &["bad quoting in WORKDIR", "unterminated single quote"],
    );
    // Each wrong WORKDIR is one error; the COPYs after them are fine.
    let all = errors("WORKDIR /a\nWORKDIR b c\nCOPY x y\nWORKDIR \"\nCOPY p q");
    assert_eq!(all.len(), 2);
}

#[test]
fn user() {
    assert_eq!(
        one_step("USER root"),
        StepKind::User {
            name: "root".into()
        }
    );
    assert_eq!(
        one_step("USER _apt"),
        StepKind::User {
            name: "_apt".into()
        }
    );
    assert_eq!(
        one_step("USER www-data"),
        StepKind::User {
            name: "www-data".into()
        }
    );
    error("USER", 1, &["USER needs a user name"]);
    error("USER Root", 1, &["`Root` is not a user name"]);
    error("USER 0", 1, &["`0` is not a user name"]);
    error("USER a b", 1, &["`a b` is not a user name"]);
    error(&format!("USER {}", "u".repeat(33)), 1, &["not a user name"]);
}

#[test]
fn copy() {
    let copy = |text: &str| match one_step(text) {
        StepKind::Copy {
            sources,
            dest,
            dest_is_dir,
        } => (sources, dest, dest_is_dir),
        other => panic!("{other:?}"),
    };
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(copy("COPY a /b"), (owned(&["a"]), "/b".into(), false));
    assert_eq!(copy("COPY a /b/"), (owned(&["a"]), "/b".into(), true));
    assert_eq!(
        copy("COPY a b /c/"),
        (owned(&["a", "b"]), "/c".into(), true)
    );
    assert_eq!(copy("COPY a b /"), (owned(&["a", "b"]), "/".into(), true));
    assert_eq!(
        copy("COPY ./a//b/ c/../d x/"),
        (owned(&["a/b", "d"]), "/x".into(), true)
    );
    assert_eq!(copy("COPY . /app/"), (owned(&["."]), "/app".into(), true));
    assert_eq!(
        copy(r#"COPY "my file" 'other file' "/dest dir/""#),
        (owned(&["my file", "other file"]), "/dest dir".into(), true)
    );
    // Relative destinations are resolved against the WORKDIR; `.` and `..` are directories.
    let recipe = ok("WORKDIR /srv\nCOPY a b\nCOPY a b .\nCOPY a ../\nCOPY a ..");
    let dests: Vec<(String, bool)> = recipe.steps[1..]
        .iter()
        .map(|step| match &step.kind {
            StepKind::Copy {
                dest, dest_is_dir, ..
            } => (dest.clone(), *dest_is_dir),
            other => panic!("{other:?}"),
        })
        .collect();
    let dest = |d: &str, is_dir| (d.to_string(), is_dir);
    assert_eq!(
        dests,
        [
            dest("/srv/b", false),
            dest("/srv", true),
            dest("/", true),
            dest("/", true)
        ]
    );

    error(
        "COPY",
        1,
        &["COPY needs at least one source and a destination"],
    );
    error(
        "COPY a",
        1,
        &["COPY needs at least one source and a destination"],
    );
    let kind = error(
        "COPY a b /c",
        1,
        &["several sources", "ending in `/`", "`/c`"],
    );
    assert_eq!(
        kind,
        ErrorKind::DestinationNotDirectory { dest: "/c".into() }
    );
    let kind = error(
        "COPY /etc/passwd /x",
        1,
        &["COPY source `/etc/passwd`", "absolute"],
    );
    assert!(matches!(kind, ErrorKind::BadSource { .. }));
    error(
        "COPY ../secret /x",
        1,
        &["`../secret`", "outside the build context"],
    );
    error("COPY a/../../b /x", 1, &["`a/../../b`", "outside"]);
    error("COPY '' /x", 1, &["COPY source ``", "empty"]);
    error("COPY a ''", 1, &["COPY destination is empty"]);
    error(
        "COPY 'a b",
        1,
        &["bad quoting in COPY", "unterminated single quote"],
    );
    error("COPY \"a b", 1, &["unterminated double quote"]);
    // Every bad source is reported.
    assert_eq!(errors("COPY /a ../b c /d").len(), 3);
}

#[test]
fn start() {
    let recipe = ok("START redis-server\nRUN x\nSTART  nginx -g 'daemon off;'");
    assert_eq!(
        kinds(&recipe),
        [
            StepKind::Start {
                command: "redis-server".into()
            },
            run("x"),
            StepKind::Start {
                command: "nginx -g 'daemon off;'".into()
            },
        ]
    );
    error("START", 1, &["START needs a command"]);
}

#[test]
fn healthcheck() {
    let recipe = ok("HEALTHCHECK true\nRUN x");
    assert_eq!(
        recipe.healthcheck,
        Some(Healthcheck {
            line: 1,
            ..Healthcheck::new("true")
        })
    );
    assert_eq!(recipe.steps.len(), 1);
    let check = ok("HEALTHCHECK --start-period=0s --retries=1 -- --check").healthcheck;
    let check = check.unwrap_or_else(|| panic!("no healthcheck"));
    assert_eq!((check.start_period, check.retries), (Duration::ZERO, 1));
    assert_eq!((check.interval, check.timeout), (s(5), s(5)));
    assert_eq!(check.command, "--check");
    assert_eq!(
        ok("HEALTHCHECK --retries=4294967295 x")
            .healthcheck
            .map(|h| h.retries),
        Some(u32::MAX)
    );

    error("HEALTHCHECK", 1, &["HEALTHCHECK needs a command"]);
    error(
        "HEALTHCHECK --interval=0s x",
        1,
        &["`--interval`", "more than 0"],
    );
    error(
        "HEALTHCHECK --timeout=0s x",
        1,
        &["`--timeout`", "more than 0"],
    );
    error(
        "HEALTHCHECK --start-period=3h x",
        1,
        &["`--start-period`", "maximum"],
    );
    error(
        "HEALTHCHECK --interval=5 x",
        1,
        &["`--interval`", "missing unit"],
    );
    error(
        "HEALTHCHECK --retries=0 x",
        1,
        &["`--retries`", "at least 1"],
    );
    error(
        "HEALTHCHECK --retries=x x",
        1,
        &["`--retries`", "whole number"],
    );
    error(
        "HEALTHCHECK --retries=-1 x",
        1,
        &["`--retries`", "whole number"],
    );
    error("HEALTHCHECK --retries=4294967296 x", 1, &["`--retries`"]);
    let kind = error(
        "HEALTHCHECK a\nRUN x\nHEALTHCHECK b",
        3,
        &["HEALTHCHECK given twice", "line 1"],
    );
    assert_eq!(
        kind,
        ErrorKind::Duplicate {
            keyword: Keyword::Healthcheck,
            first_line: 1
        }
    );
}

#[test]
fn unknown_instruction() {
    let kind = error(
        "RUN x\n  CMD [\"x\"]",
        2,
        &[
            "unknown instruction `CMD`",
            "FROM, RUN, ENV, WORKDIR, USER, COPY, START, HEALTHCHECK",
        ],
    );
    assert_eq!(
        kind,
        ErrorKind::UnknownInstruction {
            keyword: "CMD".into()
        }
    );
    // Long words are cut in the message.
    let long = "X".repeat(1000);
    let message = errors(&long)[0].to_string();
    assert!(message.len() < 300, "{message}");
    assert!(message.contains('…'));
    // An unknown instruction does not make a later FROM misplaced.
    error("RUNN x\nFROM base", 1, &["`RUNN`"]);
}

#[test]
fn several_errors_at_once() {
    let text = "RUN --timeout=5 x\nFROM base\nENV 1=2\n\nUSER Bad\nCOPY a\nFOO\nRUN ok\nHEALTHCHECK --retries=0\n";
    let all = errors(text);
    let lines: Vec<usize> = all.iter().map(|e| e.line).collect();
    assert_eq!(lines, [1, 2, 3, 5, 6, 7, 9, 9], "{all:?}");
    let display = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
    let display_lines: Vec<&str> = display.lines().collect();
    assert_eq!(display_lines.len(), 8);
    assert_eq!(
        display_lines[0],
        "line 1: bad value `5` for option `--timeout` of RUN: missing unit after `5` (use ms, s, m or h)"
    );
    assert_eq!(
        display_lines[1],
        "line 2: FROM must come before every other instruction"
    );
    assert_eq!(
        display_lines[4],
        "line 6: COPY needs at least one source and a destination"
    );
    assert_eq!(display_lines[7], "line 9: HEALTHCHECK needs a command");
}

#[test]
fn no_instruction() {
    for text in ["", "\n\n", "# only\n  # comments\n", " \t \r\n"] {
        let all = errors(text);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].line, 0);
        assert_eq!(all[0].kind, ErrorKind::NoInstruction);
        assert_eq!(all[0].to_string(), "the recipe has no instruction");
    }
}

#[test]
fn size_limit() {
    let filler = |len: usize| format!("RUN x\n#{}", "a".repeat(len - 7));
    assert_eq!(filler(MAX_RECIPE_BYTES).len(), MAX_RECIPE_BYTES);
    ok(&filler(MAX_RECIPE_BYTES));
    let kind = error(
        &filler(MAX_RECIPE_BYTES + 1),
        0,
        &["1048577 bytes", "1 MiB"],
    );
    assert_eq!(
        kind,
        ErrorKind::TooLarge {
            bytes: MAX_RECIPE_BYTES + 1
        }
    );
}

#[test]
fn instruction_limit() {
    let recipe = |count: usize| "RUN x\n".repeat(count);
    assert_eq!(ok(&recipe(MAX_INSTRUCTIONS)).steps.len(), MAX_INSTRUCTIONS);
    // FROM and HEALTHCHECK count; comments do not.
    let text = format!("FROM a\n# c\n{}HEALTHCHECK h", recipe(MAX_INSTRUCTIONS - 2));
    ok(&text);
    let text = format!("FROM a\n# c\n{}HEALTHCHECK h", recipe(MAX_INSTRUCTIONS - 1));
    let kind = error(
        &text,
        MAX_INSTRUCTIONS + 2,
        &["more than 1000 instructions"],
    );
    assert_eq!(kind, ErrorKind::TooManyInstructions);
    // Past the limit nothing else is reported.
    let text = format!("{}BAD\nBAD", recipe(MAX_INSTRUCTIONS));
    error(
        &text,
        MAX_INSTRUCTIONS + 1,
        &["more than 1000 instructions"],
    );
}

#[test]
fn instruction_length_limit() {
    let command = |len: usize| "x".repeat(len - "RUN ".len());
    let text = format!("RUN {}", command(MAX_INSTRUCTION_BYTES));
    assert_eq!(ok(&text).steps.len(), 1);
    let text = format!("RUN x\nRUN {}", command(MAX_INSTRUCTION_BYTES + 1));
    let kind = error(&text, 2, &["65537 bytes", "64 KiB"]);
    assert_eq!(
        kind,
        ErrorKind::InstructionTooLong {
            bytes: MAX_INSTRUCTION_BYTES + 1
        }
    );
    // Continuations are joined before measuring; the error is at the first line.
    let part = "y".repeat(1000);
    let text = format!("\nRUN \\\n{}", format!("{part} \\\n").repeat(70));
    error(&text, 2, &["more than the limit of 65536 bytes"]);
}

#[test]
fn nul_bytes() {
    let kind = error("RUN a\nRUN b\0c", 2, &["NUL byte"]);
    assert_eq!(kind, ErrorKind::NulByte);
    // In a comment, and in a continuation line (reported at that line).
    error("# \0\nRUN x", 1, &["NUL"]);
    error("RUN a \\\n b \\\n c\0", 3, &["NUL"]);
    // A line with a NUL is reported once, and its instruction not checked further.
    error("BAD\0 \0", 1, &["NUL"]);
    assert_eq!(errors("\0").len(), 1);
    // A recipe of NULs: no instruction is the second error.
    let all = errors("#\0");
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].line, all[1].line), (0, 1));
}

#[test]
fn plan_and_final_context() {
    let recipe = ok("ENV A=1\nRUN one\nWORKDIR /w\nENV B=2\nUSER u\nENV A=3\nSTART two\nCOPY x y");
    let plan = recipe.plan();
    assert_eq!(plan.len(), recipe.steps.len());
    let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(plan[0].context, Context::default());
    assert_eq!(plan[0].context.workdir, "/");
    assert_eq!(plan[0].context.user, None);
    assert_eq!(plan[1].step.kind, run("one"));
    assert_eq!(
        plan[1].context,
        Context {
            env: env(&[("A", "1")]),
            workdir: "/".into(),
            user: None
        }
    );
    assert_eq!(
        plan[6].context,
        Context {
            env: env(&[("A", "3"), ("B", "2")]),
            workdir: "/w".into(),
            user: Some("u".into())
        }
    );
    assert_eq!(recipe.final_context(), plan[7].context);
    assert_eq!(ok("FROM a").final_context(), Context::default());
}

#[test]
fn canonical_text() {
    let recipe = ok(EXAMPLE);
    let text = recipe.to_text();
    assert_eq!(
        text,
        r#"FROM python3.12
ENV APP_HOME=/srv/app
ENV GREETING=hello "world"
WORKDIR /srv/app
USER root
COPY requirements.txt 'static files' /srv/app/
COPY app.py /srv/app/app/main.py
RUN --timeout=15m pip install        -r requirements.txt
USER app
START python -m http.server 8000
HEALTHCHECK --interval=2s --timeout=1s --start-period=30s --retries=10 curl -fs http://localhost:8000/
"#
    );
    let again = ok(&text);
    assert_eq!(again.from, recipe.from);
    assert_eq!(kinds(&again), kinds(&recipe));
    assert_eq!(
        again.healthcheck.map(|h| h.command),
        Some("curl -fs http://localhost:8000/".into())
    );
    assert_eq!("RUN x".parse::<Recipe>().map(|r| r.steps.len()), Ok(1));
}

#[test]
fn canonical_text_of_awkward_values() {
    let step = |kind: StepKind| Step { line: 0, kind };
    let recipe = Recipe {
        from: None,
        steps: vec![
            step(StepKind::Run {
                command: "--weird \\".into(),
                timeout: Duration::from_millis(1500),
            }),
            step(StepKind::Env {
                key: "A".into(),
                value: "\"quoted\" \\".into(),
            }),
            step(StepKind::Env {
                key: "B".into(),
                value: " spaced ".into(),
            }),
            step(StepKind::Workdir {
                dir: "/it's here".into(),
            }),
            step(StepKind::Copy {
                sources: vec!["--odd".into(), "a\\b".into()],
                dest: "/".into(),
                dest_is_dir: true,
            }),
        ],
        healthcheck: None,
    };
    let text = recipe.to_text();
    assert_eq!(
        text,
        "RUN --timeout=1s500ms -- --weird \\ \nENV A=\"\\\"quoted\\\" \\\\\"\nENV B=\" spaced \"\n\
         WORKDIR '/it'\\''s here'\nCOPY '--odd' 'a\\b' /\n"
    );
    assert_eq!(
        ok(&text),
        Recipe {
            steps: recipe
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| Step {
                    line: i + 1,
                    kind: s.kind.clone()
                })
                .collect(),
            ..recipe
        }
    );
}

/// The code blocks of docs/templates.md's "Recipe format" section.
fn doc_blocks() -> Vec<String> {
    let doc = include_str!("../../../docs/templates.md");
    let section = doc.split("## Recipe format").nth(1).unwrap_or_default();
    section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| block.trim_start_matches('\n').to_string())
        .collect()
}

#[test]
fn the_documented_example_parses() {
    let blocks = doc_blocks();
    let recipe = ok(&blocks[0]);
    assert_eq!(recipe.base(), "python");
    assert_eq!(recipe.steps.len(), 7);
    assert_eq!(
        recipe.copy_sources().collect::<Vec<_>>(),
        ["requirements.txt", "app.py", "static files"]
    );
    assert!(recipe.healthcheck.is_some());
}

#[test]
fn the_documented_errors_are_the_real_ones() {
    let text = "RUN\n\n# c\nRUN --timeout=30 \\\n  x\n\nCMD [\"x\"]\n\nCOPY ../secret /\n";
    let shown = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(shown + "\n", doc_blocks()[1]);
}
