//! `wrenn template build|list|rm|builds|logs|cancel`: template builds from recipes on a server.
//! A build's output is followed live (`GET …/builds/{id}/logs`, Server-Sent Events): a
//! progress line per step on stderr, the steps' own output as it comes; Ctrl-C cancels it.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

use crate::api::ApiClient;
use crate::error::ApiError;
use crate::events::SseReader;
use crate::table::{render, short_time};
use crate::types::{Build, CreateBuild};

/// `wrenn template …` commands that talk to a server.
#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum TemplateCommand {
    /// Builds a template on the server from a recipe and follows its output (Ctrl-C cancels).
    ///
    /// Without `--recipe`, builds the recipe the server ships under NAME (`code-runner-beta`).
    Build {
        /// Name of the template to make (replaces an earlier build of that name).
        name: String,
        /// The recipe file (docs/templates.md).
        #[arg(long, short)]
        recipe: Option<PathBuf>,
        /// Directory `COPY` takes files from (default: the recipe's directory).
        #[arg(long, requires = "recipe")]
        context: Option<PathBuf>,
        /// vCPUs of the build and of capsules made from the template (default 2).
        #[arg(long)]
        vcpus: Option<u32>,
        /// Memory in MiB of the build and of capsules made from the template (default 1024).
        #[arg(long = "memory-mb", visible_alias = "memory")]
        memory_mb: Option<u32>,
        /// Print the build id and return at once.
        #[arg(long, short = 'd')]
        detach: bool,
    },
    /// Lists the templates capsules can be made from (base, built and the team's snapshots).
    #[command(visible_alias = "ls")]
    List,
    /// Removes built templates.
    #[command(visible_aliases = ["delete"])]
    Rm {
        /// Template names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Lists the latest builds.
    Builds,
    /// Prints a build's log (following it while it runs).
    Logs {
        /// Build id (`bld-…`).
        id: String,
    },
    /// Cancels a running build.
    Cancel {
        /// Build id (`bld-…`).
        id: String,
    },
}

/// Why a template command failed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The server refused or failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The recipe file has errors (checked before anything is sent).
    #[error("{0}")]
    Recipe(String),
    /// Reading the recipe or the context failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was read.
        what: &'static str,
        /// Where.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Writing the output failed.
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
    /// The log stream ended before the build did.
    #[error("the log stream of build {0} ended before the build")]
    Closed(String),
}

/// Runs a template command; the exit code (a failed or cancelled build is 1).
pub async fn run(api: &ApiClient, json: bool, cmd: TemplateCommand) -> Result<i32, TemplateError> {
    match cmd {
        TemplateCommand::Build {
            name,
            recipe,
            context,
            vcpus,
            memory_mb,
            detach,
        } => {
            let req = build_request(
                name,
                recipe.as_deref(),
                context.as_deref(),
                vcpus,
                memory_mb,
            )?;
            let build = api.create_build(&req).await?;
            if detach || json {
                if json {
                    print_json(&build)?;
                } else {
                    println!("{}", build.id);
                }
                return Ok(0);
            }
            eprintln!("build {} of {} queued", build.id, build.name);
            follow(api, &build.id, true).await
        }
        TemplateCommand::List => {
            let templates = api.list_snapshots(None).await?;
            if json {
                print_json(&templates)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = templates
                .iter()
                .map(|t| {
                    let built = t
                        .extra
                        .get("metadata")
                        .and_then(|m| m.get("build_id"))
                        .is_some();
                    vec![
                        t.name.clone(),
                        if built {
                            "base (built)".into()
                        } else {
                            t.kind.clone()
                        },
                        t.vcpus.to_string(),
                        t.memory_mb.to_string(),
                        format!("{:.1}", t.size_bytes as f64 / f64::from(1 << 20)),
                        short_time(&t.created_at),
                    ]
                })
                .collect();
            print!(
                "{}",
                render(
                    &["NAME", "TYPE", "VCPUS", "MEMORY_MB", "SIZE_MIB", "CREATED"],
                    &rows
                )
            );
            Ok(0)
        }
        TemplateCommand::Rm { names } => {
            let mut code = 0;
            for name in names {
                match api.delete_built_template(&name).await {
                    Ok(()) => println!("{name} removed"),
                    Err(e) => {
                        eprintln!("error: {name}: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        TemplateCommand::Builds => {
            let builds = api.list_builds().await?;
            if json {
                print_json(&builds)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = builds
                .iter()
                .map(|b| {
                    vec![
                        b.id.clone(),
                        b.name.clone(),
                        b.status.clone(),
                        format!("{}/{}", b.step, b.steps),
                        short_time(&b.created_at),
                        b.error
                            .clone()
                            .unwrap_or_default()
                            .lines()
                            .next()
                            .unwrap_or("")
                            .to_owned(),
                    ]
                })
                .collect();
            print!(
                "{}",
                render(
                    &["ID", "TEMPLATE", "STATUS", "STEP", "CREATED", "ERROR"],
                    &rows
                )
            );
            Ok(0)
        }
        TemplateCommand::Logs { id } => follow(api, &id, false).await,
        TemplateCommand::Cancel { id } => {
            let b = api.cancel_build(&id).await?;
            eprintln!("build {} of {} is being cancelled", b.id, b.name);
            Ok(0)
        }
    }
}

/// The request of `wrenn template build`: the recipe checked here first, and the context
/// packed with just the paths its `COPY` steps take.
fn build_request(
    name: String,
    recipe: Option<&Path>,
    context: Option<&Path>,
    vcpus: Option<u32>,
    memory_mb: Option<u32>,
) -> Result<CreateBuild, TemplateError> {
    let mut req = CreateBuild {
        name,
        recipe: None,
        vcpus,
        memory_mb,
        context: None,
    };
    let Some(path) = recipe else {
        return Ok(req);
    };
    let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
        what: "reading the recipe",
        path: path.display().to_string(),
        source,
    })?;
    let parsed = wrenn_recipe::parse(&text).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| match e.line {
                0 => format!("{}: {}", path.display(), e.kind),
                n => format!("{}:{n}: {}", path.display(), e.kind),
            })
            .collect();
        TemplateError::Recipe(format!("the recipe has errors:\n{}", lines.join("\n")))
    })?;
    let sources: Vec<&str> = parsed.copy_sources().collect();
    if !sources.is_empty() {
        let dir = match context {
            Some(d) => d.to_owned(),
            None => path
                .parent()
                .map(|p| {
                    if p.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        p
                    }
                })
                .unwrap_or(Path::new("."))
                .to_owned(),
        };
        let archive = pack_context(&dir, &sources)?;
        req.context = Some(base64::engine::general_purpose::STANDARD.encode(archive));
    }
    req.recipe = Some(text);
    Ok(req)
}

/// A tar of `sources` (paths relative to `dir`; directories whole, symbolic links as links).
pub fn pack_context(dir: &Path, sources: &[&str]) -> Result<Vec<u8>, TemplateError> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let io = |what: &'static str, p: &Path| {
        let path = p.display().to_string();
        move |source| TemplateError::Io { what, path, source }
    };
    let mut seen = std::collections::BTreeSet::new();
    for src in sources {
        if !seen.insert(*src) {
            continue;
        }
        let full = dir.join(src);
        let meta = std::fs::symlink_metadata(&full).map_err(io("reading the context", &full))?;
        if *src == "." {
            tar.append_dir_all(".", &full)
                .map_err(io("packing the context", &full))?;
        } else if meta.is_dir() {
            tar.append_dir_all(src, &full)
                .map_err(io("packing the context", &full))?;
        } else {
            tar.append_path_with_name(&full, src)
                .map_err(io("packing the context", &full))?;
        }
    }
    tar.into_inner().map_err(io("packing the context", dir))
}

/// Follows a build's log until it ends; with `cancel_on_ctrl_c`, Ctrl-C cancels the build and
/// the log is followed to its end.
async fn follow(api: &ApiClient, id: &str, cancel_on_ctrl_c: bool) -> Result<i32, TemplateError> {
    let resp = api.build_logs(id).await?;
    let url = api
        .base()
        .api(&format!("/admin/templates/builds/{id}/logs"));
    let mut reader = SseReader::new(resp, url);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut cancelling = false;
    loop {
        let events = tokio::select! {
            _ = &mut ctrl_c, if !cancelling => {
                if !cancel_on_ctrl_c {
                    return Ok(130);
                }
                cancelling = true;
                eprintln!("cancelling build {id}…");
                if let Err(e) = api.cancel_build(id).await {
                    eprintln!("error: could not cancel: {e}");
                }
                continue;
            }
            e = reader.next() => e?,
        };
        let Some(events) = events else {
            return Err(TemplateError::Closed(id.to_owned()));
        };
        for ev in events {
            let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
            match ev.event.as_str() {
                "log" => print_entry(&v)?,
                "end" => {
                    let b: Build = serde_json::from_value(v.clone()).map_err(|e| {
                        TemplateError::Output(std::io::Error::other(format!("bad end event: {e}")))
                    })?;
                    return Ok(report_end(&b));
                }
                _ => {}
            }
        }
    }
}

fn print_entry(v: &Value) -> Result<(), TemplateError> {
    let text = v["text"].as_str().unwrap_or_default();
    match v["stream"].as_str().unwrap_or_default() {
        "step" => eprintln!("{}", console::style(text).bold()),
        "stdout" => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        "error" => eprintln!("{}", console::style(text).red()),
        "info" => eprint!("{}", console::style(with_newline(text)).dim()),
        _ => eprint!("{text}"),
    }
    Ok(())
}

fn with_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

fn report_end(b: &Build) -> i32 {
    match b.status.as_str() {
        "succeeded" => {
            eprintln!("template {} built (build {})", b.name, b.id);
            0
        }
        status => {
            let why = b.error.as_deref().unwrap_or("no reason given");
            eprintln!("build {} {status}: {why}", b.id);
            1
        }
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<(), TemplateError> {
    let text = serde_json::to_string_pretty(v).map_err(std::io::Error::other)?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_holds_only_what_copy_takes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app/lib")).unwrap();
        std::fs::write(dir.path().join("app/lib/a.py"), "a").unwrap();
        std::fs::write(dir.path().join("secret.env"), "x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "n").unwrap();
        let tar_bytes = pack_context(dir.path(), &["app", "notes.txt", "app"]).unwrap();
        let mut names: Vec<String> = tar::Archive::new(&tar_bytes[..])
            .entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .display()
                    .to_string()
                    .trim_end_matches('/')
                    .to_owned()
            })
            .collect();
        names.sort();
        assert_eq!(names, ["app", "app/lib", "app/lib/a.py", "notes.txt"]);
        let err = pack_context(dir.path(), &["missing"]).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn recipe_errors_name_the_file_and_line_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipe");
        std::fs::write(&path, "RUN echo ok\nBOGUS thing\n").unwrap();
        let err = build_request("t".into(), Some(&path), None, None, None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("{}:2: ", path.display())), "{text}");
        assert!(text.contains("BOGUS"), "{text}");
    }
}
