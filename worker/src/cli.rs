//! The `img3d-worker` command line (in the library so tests can check it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use img3d_gateway::GatewayConfig;
use img3d_pipeline::DeviceSpec;
use img3d_service::RedisOptions;

use crate::converter::Converter;
use crate::model_source::ModelSource;
use crate::ModelSpec;

/// The img3d worker: runs the CRM image-to-3D pipeline on jobs from a Redis queue (one job at
/// a time per GPU), or as an all-in-one server (`standalone`), or once on a file (`run`).
#[derive(Debug, Parser)]
#[command(name = "img3d-worker", version, about)]
pub struct Cli {
    /// Mode; without one, takes jobs from Redis (needs --redis and --model).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of the Redis queue worker (no subcommand).
    #[command(flatten)]
    pub queue: QueueWorkerArgs,
}

/// The modes besides the queue worker.
// Parsed once at startup and matched once: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Gateway + in-process queue + worker in one process: the single-machine default.
    Standalone(StandaloneArgs),
    /// Runs the pipeline once on an image file and writes the three parts to a directory.
    Run(RunArgs),
    /// Prints the `config.json` of a model bundle preset as this build defines it: `crm` is
    /// what `tools/convert.py --config` takes to convert the official checkpoints.
    BundleConfig(BundleConfigArgs),
    /// Downloads and converts the official CRM weights into the cache (what the first use of
    /// `--model crm` does) and prints the bundle directory, e.g. to mount it into the worker
    /// image, which has no Python to convert with.
    PrepareModel(PrepareModelArgs),
}

/// `img3d-worker prepare-model`.
#[derive(Debug, Clone, Args)]
pub struct PrepareModelArgs {
    /// Where `--model crm` comes from on first use.
    #[command(flatten)]
    pub source: ModelSourceArgs,
}

/// Where `--model crm` comes from on first use: downloads and the converter.
#[derive(Debug, Clone, Default, Args)]
pub struct ModelSourceArgs {
    /// Base URL serving the official files under their names (u2net.onnx, pixel-diffusion.pth,
    /// ccm-diffusion.pth, CRM.pth), e.g. a mirror; without it, Hugging Face Zhengyi/CRM and
    /// rembg's GitHub release. Used only when `<cache>/bundles/crm` is missing.
    #[arg(long, env = "IMG3D_MODEL_SOURCE")]
    pub model_source: Option<String>,

    /// Python with torch and safetensors that runs the converter on first use of `--model crm`
    /// (default: $IMG3D_TORCH_VENV/bin/python, else ~/.cache/img3d/torch-2.11.0/bin/python, the
    /// venv scripts/setup makes, if it exists).
    #[arg(long, env = "IMG3D_PYTHON")]
    pub converter_python: Option<PathBuf>,

    /// tools/convert.py of this img3d version, run on first use of `--model crm` (default: the
    /// source tree this binary was built from, if it still exists; set this for an installed
    /// binary).
    #[arg(long, env = "IMG3D_CONVERTER")]
    pub converter: Option<PathBuf>,
}

impl ModelSourceArgs {
    /// The model source these options describe, converting to this build's `crm` layout.
    pub fn source(&self) -> ModelSource {
        ModelSource {
            base_url: self.model_source.clone(),
            converter: Converter::new(self.converter_python.clone(), self.converter.clone()),
            ..ModelSource::default()
        }
    }
}

/// `img3d-worker bundle-config crm|tiny`.
#[derive(Debug, Clone, Args)]
pub struct BundleConfigArgs {
    /// `crm` (the official architecture) or `tiny` (random-weight test width).
    #[arg(value_parser = preset_parser())]
    pub preset: img3d_pipeline::Preset,
}

/// The pipeline's own presets as clap values (listed in `--help`, checked on parse).
fn preset_parser() -> impl clap::builder::TypedValueParser<Value = img3d_pipeline::Preset> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(img3d_pipeline::Preset::ALL.map(img3d_pipeline::Preset::as_str))
        .try_map(|name| name.parse::<img3d_pipeline::Preset>())
}

/// Which model on which device.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model: `tiny` (small random-weight bundle: output is noise, for tests and demos), `crm`
    /// (the converted official weights) or a bundle directory.
    #[arg(long, env = "IMG3D_MODEL")]
    pub model: ModelSpec,

    /// Device: `auto` (first CUDA GPU if any, else CPU), `cpu`, or `cuda:N`.
    #[arg(long, env = "IMG3D_DEVICE", default_value = "auto")]
    pub device: DeviceSpec,

    /// Where `--model crm` comes from on first use.
    #[command(flatten)]
    pub source: ModelSourceArgs,
}

/// `img3d-worker --redis URL --model M`: takes jobs from Redis.
#[derive(Debug, Clone, Args)]
pub struct QueueWorkerArgs {
    /// Redis URL of the job queue shared with the gateways: `redis://[:PASSWORD@]HOST:PORT[/DB]`,
    /// or rediss:// for TLS; `redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]`
    /// for the master of a Sentinel group (found again after a failover).
    #[arg(long, env = "IMG3D_REDIS")]
    pub redis: Option<String>,

    /// Prefix of every Redis key (must match the gateways').
    #[arg(long, env = "IMG3D_PREFIX", default_value = "img3d")]
    pub prefix: String,

    /// Dead-process detection (the same values as the gateways').
    #[command(flatten)]
    pub redis_options: RedisOptions,

    /// Model: `tiny`, `crm` or a bundle directory (see `standalone --help`).
    #[arg(long, env = "IMG3D_MODEL")]
    pub model: Option<ModelSpec>,

    /// Device: `auto`, `cpu` or `cuda:N`. One worker process per GPU.
    #[arg(long, env = "IMG3D_DEVICE", default_value = "auto")]
    pub device: DeviceSpec,

    /// Where `--model crm` comes from on first use.
    #[command(flatten)]
    pub source: ModelSourceArgs,

    /// Address for /healthz, /readyz (503 with the reason until the model is loaded) and
    /// /metrics.
    #[arg(long, env = "IMG3D_HEALTH_LISTEN", default_value = "0.0.0.0:9091")]
    pub health_listen: SocketAddr,

    /// On SIGTERM or Ctrl-C, how long the running job may take to finish before it is given
    /// back to the queue for another worker (e.g. 90s). Set the orchestrator's grace period
    /// above it.
    #[arg(long, env = "IMG3D_DRAIN_DEADLINE", default_value = "90s", value_parser = img3d_service::args::parse_duration)]
    pub drain_deadline: Duration,
}

/// `img3d-worker standalone`.
#[derive(Debug, Clone, Args)]
pub struct StandaloneArgs {
    /// Address to listen on for clients (ws://ADDR/generate3d) and for /healthz, /readyz,
    /// /metrics. Port 0 picks a free port; the bound address is printed on stdout.
    #[arg(long, env = "IMG3D_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Which model on which device.
    #[command(flatten)]
    pub model: ModelArgs,

    /// Limits and timeouts.
    #[command(flatten)]
    pub gateway: GatewayConfig,
}

/// `img3d-worker run IMAGE --out DIR`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The input image file (PNG, JPEG, WebP, ...).
    pub image: PathBuf,

    /// Which model on which device.
    #[command(flatten)]
    pub model: ModelArgs,

    /// Directory to write pixel_images.png, xyz_images.png and output3d.zip into (created if
    /// missing).
    #[arg(long, env = "IMG3D_OUT")]
    pub out: PathBuf,
}
