//! How long a client may keep a connection waiting: over HTTP/1, for the rest of a request head
//! once it has begun (`header_timeout_secs`) and for its next request while none is in flight
//! (`idle_timeout_secs`), kept by the connection's reader as bytes come; and, over any protocol,
//! for it to take what sluice writes (`send_timeout_secs`), kept by the writer. Each with one
//! timer per connection, moved only when a deadline comes nearer, not for each request or write.

use crate::stall::{self, Stall};
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How many of a connection's requests (and streams, and sockets) are in flight, and since when
/// none has been.
#[derive(Clone)]
pub struct Busy(Arc<InFlightCount>);

struct InFlightCount {
    count: AtomicUsize,
    /// When the last one ended, in milliseconds from `born`.
    none_since: AtomicU64,
    born: Instant,
}

impl Default for Busy {
    fn default() -> Busy {
        Busy(Arc::new(InFlightCount {
            count: AtomicUsize::new(0),
            none_since: AtomicU64::new(0),
            born: Instant::now(),
        }))
    }
}

impl Busy {
    /// One more in flight, until the guard is dropped.
    pub fn start(&self) -> InFlight {
        self.0.count.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(&self.0))
    }

    fn any(&self) -> bool {
        self.0.count.load(Ordering::Relaxed) > 0
    }

    /// How long nothing has been in flight; `None` while something is.
    fn idle_for(&self) -> Option<Duration> {
        if self.any() {
            return None;
        }
        let since = Duration::from_millis(self.0.none_since.load(Ordering::Relaxed));
        Some(self.0.born.elapsed().saturating_sub(since))
    }

    /// Returns once nothing has been in flight for `limit` (HTTP/2, whose reader cannot tell a
    /// request from a ping or a window update, is timed by this instead of by its reads).
    pub async fn idle(&self, limit: Duration) {
        loop {
            let wait = match self.idle_for() {
                Some(idle) if idle >= limit => return,
                Some(idle) => limit - idle,
                None => limit,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A request, a stream or a socket in flight: the connection is not idle while it lasts.
pub struct InFlight(Arc<InFlightCount>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::Relaxed) == 1 {
            let now = u64::try_from(self.0.born.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.0.none_since.store(now, Ordering::Relaxed);
        }
    }
}

/// A reply's body, holding its request in flight until hyper has written it (or dropped it): a
/// client reading a large answer slowly is not idle. On HTTP/2 it is also handed over in slices,
/// each noted for the stall watch (`stall`).
pub struct Held<B> {
    body: B,
    _in_flight: InFlight,
    stall: Option<Stall>,
    /// What is left of a piece handed over in slices.
    rest: Option<Bytes>,
}

impl<B> Held<B> {
    pub fn new(body: B, in_flight: InFlight) -> Held<B> {
        Held { body, _in_flight: in_flight, stall: None, rest: None }
    }

    /// Handed over in slices, each noted in `stall`.
    pub fn watched(self, stall: Stall) -> Held<B> {
        Held { stall: Some(stall), ..self }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Held<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if let Some(stall) = &this.stall {
            stall.asked();
        }
        let polled = match (this.rest.take(), &this.stall) {
            (Some(rest), _) => Poll::Ready(Some(Ok(Frame::data(rest)))),
            // The body's source wakes hyper through the stall, which notes that it waits from then.
            (None, Some(stall)) => {
                Pin::new(&mut this.body).poll_frame(&mut Context::from_waker(&stall.waker(cx.waker())))
            }
            (None, None) => Pin::new(&mut this.body).poll_frame(cx),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(stall) = &this.stall {
                    stall.handed();
                }
                let frame = match frame.into_data() {
                    Ok(mut data) => {
                        let (first, rest) = match this.stall {
                            Some(_) => stall::slice(data),
                            // HTTP/1: a large piece is handed over in slices too. Hyper drops a
                            // body once it has taken the last frame, before writing it: handed
                            // whole, a large answer would end its request's time in flight with
                            // megabytes still to write to a slow reader.
                            None => {
                                let rest = (data.len() > stall::SLICE).then(|| data.split_off(stall::SLICE));
                                (data, rest)
                            }
                        };
                        this.rest = rest;
                        Frame::data(first)
                    }
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            polled => polled,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
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

    /// A read returned: `got` bytes came, `head_open` a request head has begun and is not
    /// complete, `whole` a head was completed (a request begins: the connection is not idle).
    pub fn read(&mut self, got: bool, head_open: bool, whole: bool) {
        if whole {
            self.head_since = None;
            self.idle_since = None;
        }
        // Any byte while nothing is in flight counts as a head begun (blank lines before one,
        // what a client sends once the watcher no longer reads heads): it has the header timeout
        // to become a request, and idle time runs from the last request, not the last byte.
        let starts_head = head_open || got && !whole && !self.busy.any();
        if starts_head && self.head_since.is_none() {
            self.head_since = Some(Instant::now());
        }
    }

    /// The client sent nothing more for now: why the connection is to be closed, when it waited
    /// too long; else the timer is set to wake the reader at the nearest deadline.
    pub fn waiting(&mut self, cx: &mut Context<'_>) -> Result<(), &'static str> {
        // Twice at most: once more when the timer went off at an earlier deadline than now's.
        for _ in 0..2 {
            let now = Instant::now();
            let (deadline, why) = match self.head_since {
                // Something is in flight (an answer being written, a stream, a socket, a review
                // waited for): not idle; looked at again later.
                _ if self.busy.any() => {
                    // A head begun behind it (pipelined) is timed once it is answered.
                    self.head_since = None;
                    self.idle_since = None;
                    (now + self.idle, None)
                }
                Some(since) => (since + self.head, Some(HEAD_TOO_SLOW)),
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

/// How long the client has left a write waiting: a write that takes no byte starts the clock, one
/// that takes any stops it (nginx's `send_timeout` reads the same way: between two writes, not for
/// a whole answer).
pub struct SendClock {
    limit: Duration,
    /// When the writes began waiting.
    since: Option<Instant>,
    /// Made with the first write that waits (a client that reads as it goes never needs one).
    timer: Option<Pin<Box<Sleep>>>,
}

impl SendClock {
    pub fn new(limit: Duration) -> SendClock {
        SendClock { limit, since: None, timer: None }
    }

    /// A write took bytes.
    pub fn wrote(&mut self) {
        self.since = None;
    }

    /// A write took nothing for now: why the connection is to be closed, when the client has
    /// left writes waiting too long; else the timer is set to wake the writer then.
    pub fn waiting(&mut self, cx: &mut Context<'_>) -> Result<(), &'static str> {
        let now = Instant::now();
        let deadline = *self.since.get_or_insert(now) + self.limit;
        if deadline <= now {
            return Err(NOT_READING);
        }
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Err(NOT_READING),
            Poll::Pending => Ok(()),
        }
    }
}

/// Why sluice closed a connection for its client's time: the error its reads or writes fail with
/// (told apart from the system's own time-outs by its type).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientTooSlow(pub &'static str);

impl ClientTooSlow {
    pub fn io(why: &'static str) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, ClientTooSlow(why))
    }
}

const NOT_READING: &str = "the client took nothing that was written to it for http.send_timeout_secs";
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
        clock.read(true, true, false);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(waiting(&mut clock), Ok(()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(waiting(&mut clock), Err(HEAD_TOO_SLOW));
        // A whole head, then a request in flight for longer than the idle timeout: not idle.
        clock.read(true, false, true);
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

    #[tokio::test(start_paused = true)]
    async fn nothing_in_flight_for_the_limit_is_idle() {
        let busy = Busy::default();
        let limit = Duration::from_secs(75);
        let idle = |busy: &Busy| {
            let busy = busy.clone();
            tokio::spawn(async move { busy.idle(limit).await })
        };
        // A request in flight for 200 s, then 74 s without one: not idle yet.
        let in_flight = busy.start();
        let watch = idle(&busy);
        tokio::time::sleep(Duration::from_secs(200)).await;
        assert!(!watch.is_finished());
        drop(in_flight);
        tokio::time::sleep(Duration::from_secs(74)).await;
        assert!(!watch.is_finished());
        // Another request, over at once: idle from its end.
        drop(busy.start());
        tokio::time::sleep(Duration::from_secs(74)).await;
        assert!(!watch.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(watch.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn writes_left_waiting_for_the_send_timeout_close_the_connection() {
        let mut send = SendClock::new(Duration::from_secs(60));
        let waiting = |send: &mut SendClock| send.waiting(&mut Context::from_waker(Waker::noop()));
        // Waiting, then a byte taken: the clock starts again from the next wait.
        assert_eq!(waiting(&mut send), Ok(()));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(waiting(&mut send), Ok(()));
        send.wrote();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(waiting(&mut send), Ok(()));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(waiting(&mut send), Ok(()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(waiting(&mut send), Err(NOT_READING));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_that_begin_no_request_do_not_keep_a_connection() {
        // Blank lines (or anything the watcher no longer reads as heads), one now and then:
        // they have the header timeout to become a request, and do not make the connection
        // less idle.
        let mut clock = Clock::new(Duration::from_secs(10), Duration::from_secs(75), Busy::default());
        assert_eq!(waiting(&mut clock), Ok(()));
        tokio::time::advance(Duration::from_secs(5)).await;
        clock.read(true, false, false);
        assert_eq!(waiting(&mut clock), Ok(()));
        tokio::time::advance(Duration::from_secs(6)).await;
        clock.read(true, false, false);
        assert_eq!(waiting(&mut clock), Ok(()));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(waiting(&mut clock), Err(HEAD_TOO_SLOW));
        // A head completed in the read that begins the next: the next has its own time.
        let mut clock = Clock::new(Duration::from_secs(10), Duration::from_secs(75), Busy::default());
        clock.read(true, true, false);
        tokio::time::advance(Duration::from_secs(9)).await;
        clock.read(true, true, true);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(waiting(&mut clock), Ok(()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(waiting(&mut clock), Err(HEAD_TOO_SLOW));
    }
}
