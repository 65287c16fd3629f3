//! A connection's HTTP/2 requests, each run by hyper on a task of its own, ended with the
//! connection: hyper would leave a request whose connection is gone running until its upstream
//! answers, and its record (the client went away) would come after its session's end.

use std::future::Future;
use std::sync::Arc;
use tokio::task::JoinSet;

/// The executor hyper runs a connection's HTTP/2 requests on.
#[derive(Clone, Default)]
pub struct StreamTasks(Arc<parking_lot::Mutex<JoinSet<()>>>);

impl<F> hyper::rt::Executor<F> for StreamTasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, task: F) {
        let mut tasks = self.0.lock();
        // Those already done are let go as new ones come: as many as are in flight are kept.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            task.await;
        });
    }
}

impl StreamTasks {
    /// Ends the requests still running (each records what became of it as it is dropped), and
    /// returns once they are gone.
    pub async fn end(&self) {
        let mut tasks = std::mem::take(&mut *self.0.lock());
        tasks.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Recorded(Arc<AtomicBool>);

    impl Drop for Recorded {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn requests_still_running_are_ended_with_the_connection() {
        let tasks = StreamTasks::default();
        let recorded = Arc::new(AtomicBool::new(false));
        let guard = Recorded(Arc::clone(&recorded));
        tasks.execute(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        for _ in 0..3 {
            tasks.execute(async {});
        }
        tokio::task::yield_now().await;
        tasks.execute(async {});
        assert!(tasks.0.lock().len() <= 2, "finished requests are let go");
        tasks.end().await;
        assert!(recorded.load(Ordering::SeqCst), "the running request was dropped before end returned");
    }
}
