//! envd's routes and the HTTP/2 settings of the channel: the one home both sides read, so the
//! guest's router and the host's client cannot drift apart.
//!
//! A route with a parameter is a template (`/pty/{tag}`, axum's syntax); the host fills it in
//! with [`fill`].

/// `GET`: health and version.
pub const HEALTH: &str = "/health";
/// `POST`: run a command to completion.
pub const EXEC: &str = "/exec";
/// `POST`: run a command, streaming NDJSON events.
pub const EXEC_STREAM: &str = "/exec/stream";
/// `GET` list, `POST` start in the background.
pub const PROCESSES: &str = "/processes";
/// `POST`: signal a tracked process (by pid or tag).
pub const PROCESS_SIGNAL: &str = "/processes/{sel}/signal";
/// `GET`: attach to a background process.
pub const PROCESS_ATTACH: &str = "/processes/{sel}/attach";
/// `POST`: bytes for the stdin pipe of a background process started with `stdin`.
pub const PROCESS_STDIN: &str = "/processes/{sel}/stdin";
/// `POST`: close that stdin pipe (the process reads end of file).
pub const PROCESS_STDIN_CLOSE: &str = "/processes/{sel}/stdin/close";
/// `POST`: start a PTY session.
pub const PTY: &str = "/pty";
/// `GET`: reattach to a PTY session.
pub const PTY_CONNECT: &str = "/pty/{tag}";
/// `POST`: keystrokes.
pub const PTY_INPUT: &str = "/pty/{tag}/input";
/// `POST`: terminal size.
pub const PTY_RESIZE: &str = "/pty/{tag}/resize";
/// `POST`: kill the session's process.
pub const PTY_KILL: &str = "/pty/{tag}/kill";
/// `GET` read, `PUT` write, `DELETE` remove (`?path=`).
pub const FILES: &str = "/files";
/// `GET`: stat (`?path=`).
pub const FILES_STAT: &str = "/files/stat";
/// `GET`: list a directory (`?path=&depth=`).
pub const FILES_LIST: &str = "/files/list";
/// `GET`: a directory's events as NDJSON [`crate::FsEvent`]s (`?path=&recursive=`), until
/// the client goes away.
pub const FILES_WATCH: &str = "/files/watch";
/// `POST`: a watcher envd keeps ([`crate::WatchRequest`] → [`crate::WatcherInfo`]).
pub const FILES_WATCHERS: &str = "/files/watchers";
/// `GET`: the events of a kept watcher since the last call.
pub const FILES_WATCHER_EVENTS: &str = "/files/watchers/{id}/events";
/// `DELETE`: stop a kept watcher.
pub const FILES_WATCHER: &str = "/files/watchers/{id}";
/// `POST`: rename an entry (JSON [`crate::MoveRequest`]).
pub const FILES_MOVE: &str = "/files/move";
/// `POST`: make a directory and its parents (`?path=`).
pub const FILES_MKDIR: &str = "/files/mkdir";
/// `GET`: CPU, memory and disk use.
pub const METRICS: &str = "/metrics";
/// `POST`: after a snapshot restore (clock, entropy, network).
pub const RESTORE: &str = "/restore";
/// `POST`: a TCP tunnel to a guest port, over one HTTP/2 stream.
pub const PORT_TUNNEL: &str = "/ports/{port}";

/// HTTP/2 stream flow-control window, the same on both ends.
pub const H2_STREAM_WINDOW: u32 = 8 << 20;
/// HTTP/2 connection flow-control window.
pub const H2_CONN_WINDOW: u32 = 16 << 20;
/// HTTP/2 max frame size.
pub const H2_MAX_FRAME: u32 = 1 << 20;

/// A route template with its one `{…}` parameter replaced by `value` (already encoded).
pub fn fill(template: &str, value: &str) -> String {
    match (template.find('{'), template.find('}')) {
        (Some(a), Some(b)) if a < b => format!("{}{value}{}", &template[..a], &template[b + 1..]),
        _ => template.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_the_parameter() {
        assert_eq!(fill(PTY_INPUT, "t1"), "/pty/t1/input");
        assert_eq!(fill(PORT_TUNNEL, "8080"), "/ports/8080");
        assert_eq!(fill(PROCESS_SIGNAL, "42"), "/processes/42/signal");
        assert_eq!(fill(HEALTH, "x"), "/health");
    }
}
