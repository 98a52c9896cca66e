//! Pseudo-terminals: the master side as an async reader/writer, resizing.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::pty::{openpty, Winsize};
use tokio::io::unix::AsyncFd;

/// The master side of a PTY.
#[derive(Debug)]
pub struct Master {
    fd: AsyncFd<OwnedFd>,
}

/// Opens a PTY of `cols`×`rows`; returns the master and the slave (for the child).
pub fn open(cols: u16, rows: u16) -> std::io::Result<(Master, OwnedFd)> {
    let ws = winsize(cols, rows);
    let pair = openpty(Some(&ws), None).map_err(std::io::Error::from)?;
    for fd in [&pair.master, &pair.slave] {
        set_flag(fd, libc::F_GETFD, libc::F_SETFD, libc::FD_CLOEXEC)?;
    }
    set_flag(&pair.master, libc::F_GETFL, libc::F_SETFL, libc::O_NONBLOCK)?;
    // SAFETY: the OwnedFd stays open and owned by the AsyncFd for its whole life.
    let fd = unsafe { AsyncFd::register(pair.master) }?;
    Ok((Master { fd }, pair.slave))
}

fn set_flag(fd: &OwnedFd, get: i32, set: i32, flag: i32) -> std::io::Result<()> {
    // SAFETY: fcntl on a valid owned descriptor with integer arguments.
    unsafe {
        let cur = libc::fcntl(fd.as_raw_fd(), get);
        if cur < 0 || libc::fcntl(fd.as_raw_fd(), set, cur | flag) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn winsize(cols: u16, rows: u16) -> Winsize {
    Winsize {
        ws_row: if rows == 0 { 24 } else { rows },
        ws_col: if cols == 0 { 80 } else { cols },
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Master {
    /// Reads terminal output; `Ok(0)` once the slave side is closed by everyone.
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            // SAFETY: read into a valid buffer of the given length.
            let res = guard.try_io(|fd| {
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Ok(Ok(n)) => return Ok(n),
                // EIO: the last slave fd closed (the session ended).
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data` (keystrokes).
    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            // SAFETY: write from a valid buffer of the given length.
            let res = guard.try_io(|fd| {
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the terminal size (TIOCSWINSZ); the foreground process gets SIGWINCH.
    pub fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        let ws = winsize(cols, rows);
        // SAFETY: TIOCSWINSZ reads a winsize struct we own.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}
