//! Benchmarks (filled in below).
pub async fn run(_args: &crate::cli::BenchArgs) -> i32 { 0 }
