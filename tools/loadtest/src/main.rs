//! Load and fault tests of a running img3d deployment, from the clients' side: many clients
//! through one URL (the load balancer), every job's events timed and checked (protocol order,
//! exactly three parts, each client gets its own job's result, nothing left over from an
//! earlier job). For a deployment of your own (the numbers of the test double say nothing about
//! the model). Its library's job, stats and procs modules are also what the topology tests
//! (tests/scaleout: load.rs, faults_nginx.rs) judge jobs by, against nginx + 2 gateways +
//! Redis + 2 workers running the protocol test double.
//!
//! ```text
//! loadtest load  --server ws://127.0.0.1:8080/generate3d --clients 200 --job-ms 30 \
//!                --watch gateway-1=PID --rss-limit gateway=256
//! loadtest fault --server ws://127.0.0.1:8080/generate3d --name "kill -9 gateway" \
//!                --inject "kill -9 PID" --report faults.md
//! ```
//! Exit status 0 when every promise held, 1 otherwise (the reasons on stderr).

use clap::{Parser, Subcommand};
use img3d_loadtest::{fault, load};

/// Load and fault tests of an img3d deployment, through its load balancer.
#[derive(Debug, Parser)]
#[command(name = "loadtest")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Unloaded overhead, then many clients at once: throughput, FIFO order, latency, memory.
    Load(load::LoadArgs),
    /// Clients keep jobs running while a shell command injects a fault.
    Fault(fault::FaultArgs),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Load(args) => load::run(args).await,
        Scenario::Fault(args) => fault::run(args).await,
    };
    if let Err(why) = result {
        eprintln!("loadtest: FAIL: {why}");
        std::process::exit(1);
    }
}
