//! The JSON objects of the public API that the client reads and sends.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A capsule as the API returns it. Unknown fields are kept in `extra` so `--json` prints all.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Capsule {
    /// `cl-…`.
    pub id: String,
    /// One of the contract's statuses (`running`, `paused`, …).
    pub status: String,
    /// Template name it was created from.
    #[serde(default)]
    pub template: String,
    /// Virtual CPUs.
    #[serde(default)]
    pub vcpus: u32,
    /// Memory in MiB.
    #[serde(default)]
    pub memory_mb: u64,
    /// Inactivity timeout in seconds (0 = none).
    #[serde(default)]
    pub timeout_sec: u64,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: String,
    /// RFC 3339 time it last started.
    #[serde(default)]
    pub started_at: Option<String>,
    /// RFC 3339 time of the last activity.
    #[serde(default)]
    pub last_active_at: Option<String>,
    /// Every other field the server sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `POST /v1/capsules`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CreateCapsule {
    /// Template or snapshot name (server default `minimal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Virtual CPUs (server default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    /// Memory in MiB (server default 512).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Inactivity timeout in seconds (server default 0 = none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_sec: Option<u64>,
}

/// Body of `POST /v1/capsules/{id}/exec` (foreground).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ExecRequest {
    /// Program to run.
    pub cmd: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Kill it after this many seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_sec: Option<u64>,
    /// Extra environment.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub envs: BTreeMap<String, String>,
    /// Working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Tag of a background process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Answer of a foreground exec.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExecResult {
    /// Standard output, encoded as `encoding` says.
    #[serde(default)]
    pub stdout: String,
    /// Standard error, encoded as `encoding` says.
    #[serde(default)]
    pub stderr: String,
    /// The command's exit code.
    #[serde(default)]
    pub exit_code: i32,
    /// `utf-8` or `base64`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// How long the command ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Whether the server killed the command at its timeout (when the server says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<bool>,
    /// Whether stdout was cut at the server's limit (extension field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_truncated: Option<bool>,
    /// Whether stderr was cut at the server's limit (extension field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_truncated: Option<bool>,
    /// Every other field the server sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Output that claims `base64` but does not decode.
#[derive(Debug, thiserror::Error)]
#[error("invalid_response: exec output is not valid base64")]
pub struct OutputDecodeError(#[source] base64::DecodeError);

impl ExecResult {
    /// Whether the command was killed at `timeout_sec`: the server's `timed_out` when it
    /// sends one, else a non-zero exit after running at least the timeout (the server kills
    /// the process group at the deadline; the exit code is then 137, or 124 when the guest
    /// reported 0).
    pub fn timed_out(&self, timeout_sec: Option<u64>) -> bool {
        if let Some(t) = self.timed_out {
            return t;
        }
        match (timeout_sec.filter(|t| *t > 0), self.duration_ms) {
            (Some(t), Some(ran)) => self.exit_code != 0 && ran >= t.saturating_mul(1000),
            _ => false,
        }
    }

    fn decode(&self, s: &str) -> Result<Vec<u8>, OutputDecodeError> {
        if self.encoding.as_deref() == Some("base64") {
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(OutputDecodeError)
        } else {
            Ok(s.as_bytes().to_vec())
        }
    }

    /// Standard output as raw bytes.
    pub fn stdout_bytes(&self) -> Result<Vec<u8>, OutputDecodeError> {
        self.decode(&self.stdout)
    }

    /// Standard error as raw bytes.
    pub fn stderr_bytes(&self) -> Result<Vec<u8>, OutputDecodeError> {
        self.decode(&self.stderr)
    }
}

/// Answer of a background exec.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BackgroundExec {
    /// Process id in the guest.
    pub pid: u32,
    /// The process tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Every other field the server sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A process of `GET …/processes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Process {
    /// Process id in the guest.
    pub pid: u32,
    /// Its tag (background processes and terminal sessions).
    #[serde(default)]
    pub tag: Option<String>,
    /// The program.
    #[serde(default)]
    pub cmd: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
}

/// Answer of `GET …/metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    /// The capsule.
    #[serde(default)]
    pub sandbox_id: String,
    /// The range asked for (`10m`, …).
    #[serde(default)]
    pub range: String,
    /// Samples, oldest first.
    #[serde(default)]
    pub points: Vec<MetricPoint>,
}

/// One metrics sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MetricPoint {
    /// Unix seconds.
    pub timestamp_unix: i64,
    /// CPU use in percent (of all the capsule's vCPUs).
    #[serde(default)]
    pub cpu_pct: f64,
    /// Guest memory in use, bytes.
    #[serde(default)]
    pub mem_bytes: u64,
    /// Guest disk in use, bytes.
    #[serde(default)]
    pub disk_bytes: u64,
}

/// An entry of `files/list`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Last path component.
    #[serde(default)]
    pub name: String,
    /// Absolute path in the guest.
    pub path: String,
    /// `file`, `directory` or `symlink`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Permission bits.
    #[serde(default)]
    pub mode: u32,
    /// Target of a symlink.
    #[serde(default)]
    pub symlink_target: Option<String>,
}

/// A template (`base`) or team snapshot (`snapshot`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Template {
    /// Its name.
    pub name: String,
    /// `base` or `snapshot`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Virtual CPUs.
    #[serde(default)]
    pub vcpus: u32,
    /// Memory in MiB.
    #[serde(default)]
    pub memory_mb: u64,
    /// Size on disk in bytes.
    #[serde(default)]
    pub size_bytes: u64,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: String,
    /// Every other field the server sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `POST /v1/snapshots`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CreateSnapshot {
    /// The capsule to snapshot.
    pub sandbox_id: String,
    /// Name of the new template (server generates one when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Body of `POST /v1/admin/templates/builds`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CreateBuild {
    /// Name of the template to make.
    pub name: String,
    /// Recipe text; absent to build the recipe the server ships under `name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
    /// vCPUs of the build (and of capsules made from the template).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    /// Memory in MiB of the build (and of capsules made from the template).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// Base64 of the tar archive of the files `COPY` takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// A template build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Build {
    /// `bld-…`.
    pub id: String,
    /// The template it makes.
    pub name: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// The step being run (from 1; 0 while the capsule boots).
    #[serde(default)]
    pub step: i64,
    /// Steps in all.
    #[serde(default)]
    pub steps: i64,
    /// What the current step does.
    #[serde(default)]
    pub phase: String,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: String,
    /// RFC 3339 end time.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Every other field the server sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Build {
    /// True once the build has ended.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capsule_keeps_unknown_fields() {
        let raw = serde_json::json!({"id":"cl-a","status":"running","template":"minimal","vcpus":1,
            "memory_mb":512,"timeout_sec":0,"created_at":"2026-01-01T00:00:00Z","started_at":null,
            "last_active_at":"2026-01-01T00:00:00Z","last_updated":"x","metadata":{"k":"v"}});
        let c: Capsule = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(c.id, "cl-a");
        assert_eq!(c.extra["metadata"]["k"], "v");
        assert_eq!(serde_json::to_value(&c).unwrap(), raw);
    }

    #[test]
    fn base64_output_is_decoded() {
        let r = ExecResult {
            stdout: "/w==".into(),
            stderr: "ok".into(),
            encoding: Some("base64".into()),
            ..Default::default()
        };
        assert_eq!(r.stdout_bytes().unwrap(), vec![0xff]);
        assert!(ExecResult {
            stdout: "!!".into(),
            encoding: Some("base64".into()),
            ..Default::default()
        }
        .stdout_bytes()
        .is_err());
        let r = ExecResult {
            stdout: "héllo".into(),
            encoding: Some("utf-8".into()),
            ..Default::default()
        };
        assert_eq!(r.stdout_bytes().unwrap(), "héllo".as_bytes());
    }

    #[test]
    fn timeout_is_read_from_the_answer() {
        let killed: ExecResult = serde_json::from_value(serde_json::json!({
            "stdout": "", "stderr": "", "exit_code": 137, "duration_ms": 2004, "encoding": "utf-8"
        }))
        .unwrap();
        assert!(killed.timed_out(Some(2)));
        // Without a timeout, or failing before it, it is an ordinary failure.
        assert!(!killed.timed_out(None));
        assert!(!killed.timed_out(Some(5)));
        let quick_fail = ExecResult {
            exit_code: 1,
            duration_ms: Some(10),
            ..Default::default()
        };
        assert!(!quick_fail.timed_out(Some(2)));
        // The server's own word wins.
        let said = ExecResult {
            exit_code: 124,
            duration_ms: Some(10),
            timed_out: Some(true),
            ..Default::default()
        };
        assert!(said.timed_out(Some(2)));
    }

    #[test]
    fn create_request_omits_unset_fields() {
        let body = CreateCapsule {
            vcpus: Some(2),
            ..Default::default()
        };
        assert_eq!(serde_json::to_string(&body).unwrap(), r#"{"vcpus":2}"#);
    }
}
