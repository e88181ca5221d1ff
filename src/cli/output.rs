//! Printing to stdout for the subcommands: through its lock, with a closed pipe as an error
//! rather than a panic.

/// Writes to stdout through its lock. A closed pipe (`| head`) is an error that `main` turns
/// into a quiet exit, where `println!` would panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// [`out!`] with a newline.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

pub(crate) use {out, outln};

/// Whether the error is only that the reader of stdout went away.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A list as pretty JSON, for the `--json` flag of every listing.
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A time in milliseconds since the epoch, or `never` when there is none.
pub fn time_or_never(ms: Option<i64>) -> String {
    ms.map_or_else(|| "never".to_string(), oncall_relay::store::format_ms)
}
