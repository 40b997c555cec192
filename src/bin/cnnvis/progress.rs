//! Console conventions every subcommand shares: `--quiet` (nothing but errors), progress bars
//! on stderr shown only when both stdout and stderr are terminals, and output folders created
//! as needed.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns `--quiet` on or off for the rest of the run.
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `--quiet` is on.
pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `println!` unless `--quiet`.
macro_rules! say {
    ($($t:tt)*) => {
        if !$crate::progress::quiet() {
            println!($($t)*);
        }
    };
}

/// `eprintln!` for notes and warnings, unless `--quiet` (errors use `eprintln!` directly).
macro_rules! note {
    ($($t:tt)*) => {
        if !$crate::progress::quiet() {
            eprintln!($($t)*);
        }
    };
}

pub(crate) use {note, say};

/// Whether progress bars are drawn: not `--quiet`, and both stdout and stderr are terminals.
pub(crate) fn interactive() -> bool {
    !quiet() && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// A progress bar of `len` steps on stderr, hidden unless [`interactive`]. Print through
/// [`ProgressBar::suspend`] while it runs so that lines and the bar do not mix.
pub(crate) fn bar(len: u64, what: &str) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// A spinner with a message on stderr for work of unknown length, hidden unless
/// [`interactive`].
pub(crate) fn spinner(what: &str) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Creates the folder `path` will be written to, when it has one and it does not exist yet.
pub(crate) fn create_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create folder {}: {e}", dir.display())),
        _ => Ok(()),
    }
}
