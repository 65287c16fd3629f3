//! How long an HTTP/1 client may keep a connection waiting: for the rest of a request head once
//! it has begun (`header_timeout_secs`), and for its next request while none is in flight
//! (`idle_timeout_secs`). Kept by the connection's reader as bytes come, with one timer per
//! connection that is moved only when a deadline comes nearer, not for each request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Context;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How many of a connection's requests (and streams, and sockets) are in flight.
#[derive(Clone, Default)]
pub struct Busy(Arc<AtomicUsize>);

impl Busy {
    /// One more in flight, until the guard is dropped.
    pub fn start(&self) -> InFlight {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(&self.0))
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// A request, a stream or a socket in flight: the connection is not idle while it lasts.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's deadlines.
pub struct Clock {
    head: Duration,
    idle: Duration,
    busy: Busy,
    head_since: Option<Instant>,
    idle_since: Option<Instant>,
    /// Made with the first wait (a connection answered at once never needs one).
    timer: Option<Pin<Box<Sleep>>>,
    /// The deadline the timer is set for.
    armed: Option<Instant>,
}

impl Clock {
    pub fn new(head: Duration, idle: Duration, busy: Busy) -> Clock {
        Clock { head, idle, busy, head_since: None, idle_since: None, timer: None, armed: None }
    }

    /// Bytes came; `head_open`: a request head has begun and is not complete.
    pub fn read(&mut self, head_open: bool) {
        self.idle_since = None;
        match (head_open, self.head_since) {
            (true, None) => self.head_since = Some(Instant::now()),
            (false, Some(_)) => self.head_since = None,
            _ => {}
        }
    }

    /// The client sent nothing more for now: why the connection is to be closed, when it waited
    /// too long; else the timer is set to wake the reader at the nearest deadline.
    pub fn waiting(&mut self, cx: &mut Context<'_>) -> Result<(), &'static str> {
        // Twice at most: once more when the timer went off at an earlier deadline than now's.
        for _ in 0..2 {
            let now = Instant::now();
            let (deadline, why) = match self.head_since {
                Some(since) => (since + self.head, Some(HEAD_TOO_SLOW)),
                // Something is in flight (an answer being written, a stream, a socket, a review
                // waited for): not idle; looked at again later.
                None if self.busy.any() => {
                    self.idle_since = None;
                    (now + self.idle, None)
                }
                None => (*self.idle_since.get_or_insert(now) + self.idle, Some(IDLE)),
            };
            if let Some(why) = why.filter(|_| deadline <= now) {
                return Err(why);
            }
            // A timer set for an earlier deadline stays: when it goes off, the deadline is
            // asked again.
            let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if self.armed.is_none_or(|armed| armed > deadline) {
                timer.as_mut().reset(deadline);
                self.armed = Some(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            self.armed = None;
        }
        Ok(())
    }
}

const HEAD_TOO_SLOW: &str = "the request head did not arrive within http.header_timeout_secs";
const IDLE: &str = "the connection was idle for http.idle_timeout_secs";

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn waiting(clock: &mut Clock) -> Result<(), &'static str> {
        clock.waiting(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_begun_head_has_the_header_timeout_and_an_idle_connection_the_idle_timeout() {
        let busy = Busy::default();
        let mut clock = Clock::new(Duration::from_secs(10), Duration::from_secs(75), busy.clone());
        // Idle: closed after 75 s, not 10.
        assert_eq!(waiting(&mut clock), Ok(()));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(waiting(&mut clock), Ok(()));
        tokio::time::advance(Duration::from_secs(46)).await;
        assert_eq!(waiting(&mut clock), Err(IDLE));
        // A head begun is finished within 10 s.
        clock.read(true);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(waiting(&mut clock), Ok(()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(waiting(&mut clock), Err(HEAD_TOO_SLOW));
        // A whole head, then a request in flight for longer than the idle timeout: not idle.
        clock.read(false);
        let in_flight = busy.start();
        tokio::time::advance(Duration::from_secs(200)).await;
        assert_eq!(waiting(&mut clock), Ok(()));
        drop(in_flight);
        // Idle from when it is first seen idle.
        assert_eq!(waiting(&mut clock), Ok(()));
        tokio::time::advance(Duration::from_secs(74)).await;
        assert_eq!(waiting(&mut clock), Ok(()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(waiting(&mut clock), Err(IDLE));
    }
}
