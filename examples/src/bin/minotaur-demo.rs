//! `minotaur-demo`: a Minotaur cluster in one process. Bots play while every
//! node is replaced (a rolling deploy) and then one node crashes; the report
//! checks that nothing acknowledged was lost. Run with no arguments for the
//! default: 3 nodes, 200 games.

// glibc's allocator spends a large share of a failover's time in malloc
// and free; mimalloc does not (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use minotaur_examples::demo::{self, DemoOptions};
use minotaur_examples::logging;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let options = DemoOptions::parse();
    logging::init_demo();
    match demo::run(options).await {
        Ok(report) => {
            println!("{}", report.render());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: the demo could not finish: {e}");
            ExitCode::FAILURE
        }
    }
}
