//! Where the library's log lines go when it runs inside a host (a JVM or a C program) that has
//! not installed a Rust logger: standard error, one line per event, `kahadb <LEVEL> <target>:
//! <message>`. The level comes from the `KAHADB_LOG` environment variable (`off`, `error`,
//! `warn`, `info` (the default), `debug`, `trace`). A host that installs its own `log` logger
//! first keeps it. Installed when the JNI library loads and when a store or journal is opened
//! through the C ABI.

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            // One write per line, so that lines of concurrent threads do not interleave; a
            // failed write to stderr has nowhere to be reported.
            let line = format!(
                "kahadb {} {}: {}\n",
                record.level(),
                record.target(),
                record.args()
            );
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

static LOGGER: Stderr = Stderr;

fn level_from(value: Option<&str>) -> LevelFilter {
    match value.map(str::trim).map(str::to_ascii_lowercase).as_deref() {
        Some("off") => LevelFilter::Off,
        Some("error") => LevelFilter::Error,
        Some("warn") => LevelFilter::Warn,
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        _ => LevelFilter::Info,
    }
}

/// Installs the standard-error logger unless a logger is installed already. Idempotent.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(level_from(std::env::var("KAHADB_LOG").ok().as_deref()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_parsed_with_info_as_default() {
        assert_eq!(level_from(None), LevelFilter::Info);
        assert_eq!(level_from(Some("WARN")), LevelFilter::Warn);
        assert_eq!(level_from(Some(" off ")), LevelFilter::Off);
        assert_eq!(level_from(Some("nonsense")), LevelFilter::Info);
    }
}
