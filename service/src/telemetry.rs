//! Logging setup shared by the binaries.

use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `IMG3D_LOG` (or `RUST_LOG`; default `info`), in JSON when
/// `IMG3D_LOG_FORMAT=json`.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_env("IMG3D_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if std::env::var("IMG3D_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // Already initialised (tests, or a binary embedding another): keep the first.
    let _ = result;
}
