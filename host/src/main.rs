//! `chaperon-host`: parse the command line, build the runtime, run, exit with the code.

use clap::Parser;

/// Sessions allocate and free small objects on every action from many threads; mimalloc's
/// per-thread heaps measured faster than glibc malloc for that pattern (see README, Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = chaperon_host::cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build();
    let code = match runtime {
        Ok(rt) => {
            let code = rt.block_on(chaperon_host::app::main(cli));
            // An abandoned compile may still hold a blocking thread; do not wait for it.
            rt.shutdown_background();
            code
        }
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            chaperon_host::app::EXIT_USAGE
        }
    };
    std::process::exit(code);
}
