//! Per-core session workers: single-threaded tokio runtimes, each on its own thread, that listeners
//! hand sessions to. A session never migrates, so its two directions wake each other on one thread.

use tokio::runtime::Handle;
use tokio::sync::watch;

pub struct Workers {
    handles: Vec<Handle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Workers {
    /// Starts `count` workers (0: one per CPU).
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let count = match count {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        };
        let (stop, _) = watch::channel(false);
        let mut handles = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let mut stopped = stop.subscribe();
            let thread = std::thread::Builder::new().name(format!("sluice-worker-{index}")).spawn(move || {
                runtime.block_on(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                });
            })?;
            threads.push(thread);
        }
        Ok(Workers { handles, threads, stop })
    }

    pub fn handles(&self) -> Vec<Handle> {
        self.handles.clone()
    }

    /// Stops the workers; call once the listeners have drained their sessions.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}
