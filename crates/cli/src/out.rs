//! Every byte the CLI writes on stdout goes through here, so that a closed
//! stdout (`pipeline-manager jobs ID --json | head`) ends the command
//! quietly, as Unix tools do, instead of panicking as `println!` does.
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader has gone fails
//! with `BrokenPipe`: the process then exits at once with code 0 and says
//! nothing (the reader asked for no more, as with ripgrep). Any other
//! failure to write (a full disk under a redirect) is an error, exit 1.

use std::io::{self, Write};

/// Writes `args` on stdout, or ends the process as the module says.
pub fn write(args: std::fmt::Arguments<'_>) {
    if let Err(e) = io::stdout().lock().write_fmt(args) {
        closed(e);
    }
}

/// Flushes stdout, or ends the process as the module says.
pub fn flush() {
    if let Err(e) = io::stdout().lock().flush() {
        closed(e);
    }
}

/// Writes `args` and flushes, leaving the process alone: for the last
/// words of a command that is already ending with its own exit code.
pub fn try_write(args: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_fmt(args)?;
    stdout.flush()
}

/// Whether a failed write is only the reader having gone.
pub fn is_closed(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

fn closed(e: io::Error) -> ! {
    if is_closed(&e) {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {e}");
    std::process::exit(1);
}

/// `print!` that ends the process quietly on a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

/// `println!` that ends the process quietly on a closed stdout.
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
