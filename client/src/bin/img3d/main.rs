//! `img3d`: send photos to an img3d server and save the 3D results.
//!
//! `img3d generate --server ws://HOST:PORT/generate3d IMAGE... --out DIR` sends each image in
//! turn over one connection and writes `DIR/<image stem>/{pixel_images.png, xyz_images.png,
//! output3d.zip}` (and `output3d.glb` with `--glb`). Per-job options (`--seed`, `--steps`,
//! `--guidance`, `--texture`, `--faces`, `--glb`, `--remove-background`) go on the connection's
//! query and apply to every image of the run. Exit status: 0 when every job succeeded, 1 when
//! any failed, 2 for usage errors.

mod job;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use img3d_client::{Client, ClientConfig};
use img3d_protocol::{Format, JobOptions, RemoveBackground};

use crate::report::{Mode, Reporter};

/// Command-line client of the img3d image-to-3D service.
#[derive(Debug, Parser)]
#[command(name = "img3d", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Turn photos into 3D meshes: sends each image in turn over one connection.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Server endpoint, e.g. ws://127.0.0.1:8080/generate3d.
    #[arg(long, env = "IMG3D_SERVER", value_name = "URL")]
    server: String,
    /// Images to send (PNG, JPEG, WebP, ...).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Output directory: the results of IMAGE go to DIR/STEM/ (STEM: its file name without extension).
    #[arg(long, env = "IMG3D_OUT", default_value = "out", value_name = "DIR")]
    out: PathBuf,
    /// Give up on a job after this long (e.g. 300s, 5m); the connection is then closed, which
    /// cancels the job on the server.
    #[arg(long, env = "IMG3D_TIMEOUT", default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    timeout: Duration,
    /// Limit on opening the connection.
    #[arg(long, env = "IMG3D_CONNECT_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Connection attempts per job before it fails.
    #[arg(long, env = "IMG3D_CONNECT_ATTEMPTS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    connect_attempts: u32,
    /// Send a WebSocket ping this often (off by default: the server pings).
    #[arg(long, env = "IMG3D_PING_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    ping_interval: Option<Duration>,
    /// Also unpack output3d.zip into DIR/STEM/output3d/ (entries that would leave that
    /// directory, symlinks and oversized archives are refused).
    #[arg(long, env = "IMG3D_EXTRACT", value_parser = BoolishValueParser::new())]
    extract: bool,
    /// Print machine-readable events to stdout, one JSON object per line.
    #[arg(long, env = "IMG3D_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    options: OptionArgs,
}

/// Per-job options (the server's defaults, upstream CRM's, where not given).
#[derive(Debug, Args)]
struct OptionArgs {
    /// Sampling seed, 0..=4294967295 (server default: 1234).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// DDIM steps, 1..=100 (server default: 50).
    #[arg(long, value_name = "N")]
    steps: Option<u32>,
    /// Classifier-free guidance scale, 1.0..=20.0 (server default: 5.5).
    #[arg(long, value_name = "SCALE")]
    guidance: Option<f64>,
    /// Texture size: 512, 1024 or 2048 (server default: 1024).
    #[arg(long, value_name = "N")]
    texture: Option<u32>,
    /// Decimate the mesh to at most N faces, 500..=1000000 (server default: keep all).
    #[arg(long, value_name = "N")]
    faces: Option<u32>,
    /// Also ask for output3d.glb (binary glTF with the texture embedded), saved beside the zip.
    #[arg(long)]
    glb: bool,
    /// Background removal: auto (upstream's rule), on or off.
    #[arg(long, value_name = "RULE", value_parser = ["auto", "on", "off"])]
    remove_background: Option<String>,
}

impl OptionArgs {
    /// The job options, checked against the protocol's ranges (a usage error names the flag's
    /// option and its range).
    fn job_options(&self) -> Result<JobOptions, img3d_protocol::OptionError> {
        let options = JobOptions {
            seed: self.seed,
            guidance: self.guidance,
            steps: self.steps,
            texture: self.texture,
            faces: self.faces,
            formats: self.glb.then(|| vec![Format::Zip, Format::Glb]),
            remove_background: self.remove_background.as_deref().map(|rule| match rule {
                "on" => RemoveBackground::On,
                "off" => RemoveBackground::Off,
                _ => RemoveBackground::Auto,
            }),
        };
        options.validate()?;
        Ok(options)
    }
}

/// Parses `300`, `300s`, `1500ms`, `5m` or `1h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let value: f64 =
        num.trim().parse().map_err(|_| format!("{s:?} is not a duration like 30s, 5m, 500ms"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{s:?}: {e}"))
}

fn main() -> ExitCode {
    let Command::Generate(args) = Cli::parse().command;
    tracing_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("img3d: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(generate(args))
}

/// Logs go to stderr only when asked for (`RUST_LOG=img3d_client=debug`).
fn tracing_init() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
}

async fn generate(args: GenerateArgs) -> ExitCode {
    let mode = Mode::detect(args.json);
    let mut config = ClientConfig::new(args.server.clone());
    config.timeout = args.timeout;
    config.connect_timeout = args.connect_timeout;
    config.connect_attempts = args.connect_attempts;
    config.ping_interval = args.ping_interval;
    // Progress messages only feed the display; a plain (quiet) run keeps the original protocol.
    config.progress_events = mode.wants_progress();
    config.options = match args.options.job_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("img3d: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = config.request_url() {
        eprintln!("img3d: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("img3d: cannot create the output directory {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    let config_parts = config.options.parts();
    let client = Client::new(config);
    let mut reporter = Reporter::new(mode, args.images.len());
    let mut names = job::DirNames::default();
    let mut failed = 0;
    for (i, image) in args.images.iter().enumerate() {
        let spec = job::JobSpec {
            image,
            dir: args.out.join(names.claim(image)),
            extract: args.extract,
            parts: config_parts.clone(),
        };
        reporter.start(i, image);
        if job::run(&client, &spec, &mut reporter).await.is_err() {
            failed += 1;
        }
    }
    let _ = client.close();
    reporter.summary(args.images.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag set is consistent (clap checks names, env vars and defaults for clashes).
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// Durations parse with and without units and refuse junk.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
