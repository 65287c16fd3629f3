//! The benchmark floors' runtime layout, as sluice's session workers have it: one single-threaded
//! tokio runtime per CPU, each on its own thread, for the connections.

/// Starts one worker per CPU, each thread named `relay-worker-N`; the handles to spawn onto.
pub fn start() -> anyhow::Result<Vec<tokio::runtime::Handle>> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut workers = Vec::with_capacity(cpus);
    for index in 0..cpus {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        workers.push(runtime.handle().clone());
        std::thread::Builder::new()
            .name(format!("relay-worker-{index}"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    }
    Ok(workers)
}
