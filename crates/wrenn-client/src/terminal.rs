//! The local terminal: raw mode that is always undone, and its size.

use std::sync::Mutex;

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// The settings to restore, shared with the panic hook.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Switching the terminal mode failed.
#[derive(Debug, thiserror::Error)]
#[error("terminal: could not switch stdin to raw mode")]
pub struct RawModeError(#[source] nix::Error);

/// Raw mode on stdin while this lives; the previous settings come back on drop and on panic.
pub struct RawMode {
    _private: (),
}

fn restore_saved() {
    let saved = match SAVED.lock() {
        Ok(mut g) => g.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    if let Some(t) = saved {
        // Nothing more can be done if this fails while exiting.
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &t);
    }
}

impl RawMode {
    /// Puts stdin in raw mode when it is a terminal; `Ok(None)` when it is not.
    pub fn enable() -> Result<Option<Self>, RawModeError> {
        use std::io::IsTerminal;
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let original = tcgetattr(&stdin).map_err(RawModeError)?;
        let mut raw = original.clone();
        cfmakeraw(&mut raw);
        match SAVED.lock() {
            Ok(mut g) => *g = Some(original),
            Err(poisoned) => *poisoned.into_inner() = Some(original),
        }
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_saved();
                previous(info);
            }));
        });
        if let Err(e) = tcsetattr(&stdin, SetArg::TCSANOW, &raw) {
            restore_saved();
            return Err(RawModeError(e));
        }
        Ok(Some(RawMode { _private: () }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_saved();
    }
}

/// The terminal's `(cols, rows)`, or 80x24 when stdout is not a terminal.
pub fn size() -> (u16, u16) {
    match console::Term::stdout().size_checked() {
        Some((rows, cols)) if rows > 0 && cols > 0 => (cols, rows),
        _ => (80, 24),
    }
}
