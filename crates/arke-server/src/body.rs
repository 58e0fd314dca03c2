//! Response bodies: small ones whole, large ones streamed from a producer task through a bounded
//! channel.
//!
//! A streamed body ends cleanly only when its producer said it finished ([`ChannelWriter::finish`]
//! with `Ok`): a producer that failed, panicked or was dropped ends the body with an error, so
//! hyper cuts the connection without the closing chunk and no client can take the document for
//! a complete, shorter one. The outcome travels on its own one-shot channel, so reporting it
//! never waits for room among the pieces. A client that stops reading is the connection's
//! business (`server::Stalling` times out its writes); the producer then sees the body gone.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;

/// Every response's body type.
pub type ResponseBody = BoxBody<Bytes, io::Error>;

/// Pieces of a streamed body in flight between producer and connection (each up to 64 KiB).
const CHANNEL_DEPTH: usize = 4;

/// A whole body.
pub fn full(data: impl Into<Bytes>) -> ResponseBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body (HEAD, errors without a message).
pub fn empty() -> ResponseBody {
    full(Bytes::new())
}

type Outcome = Result<(), io::Error>;

/// A streamed body and the writer its producer writes into.
pub fn channel() -> (ChannelWriter, ChannelBody) {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let (done_tx, done_rx) = oneshot::channel();
    let writer = ChannelWriter {
        tx: PollSender::new(tx),
        done: done_tx,
    };
    let body = ChannelBody {
        rx,
        head: None,
        done: Some(done_rx),
    };
    (writer, body)
}

/// The connection's end: what the producer wrote, then its outcome.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
    /// The first piece, received by [`ChannelBody::started`] and sent first.
    head: Option<Bytes>,
    /// `None` once read.
    done: Option<oneshot::Receiver<Outcome>>,
}

impl ChannelBody {
    /// Waits for the producer's first piece, so that a producer failing before any byte
    /// becomes an error status instead of a broken 200. `Ok(None)`: it finished having
    /// written nothing.
    pub async fn started(mut self) -> Result<Option<Self>, io::Error> {
        if let Some(first) = self.rx.recv().await {
            self.head = Some(first);
            return Ok(Some(self));
        }
        let done = self.done.take().expect("read once");
        outcome(done.await).map(|()| None)
    }
}

/// The producer's outcome; a producer gone without saying is a failure.
fn outcome(said: Result<Outcome, oneshot::error::RecvError>) -> Outcome {
    said.unwrap_or_else(|_| Err(io::Error::other("the snapshot stream stopped unfinished")))
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(piece) = ready!(self.rx.poll_recv(cx)) {
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        // Every piece is in; the end is clean only if the producer said so.
        let Some(done) = self.done.as_mut() else {
            return Poll::Ready(None);
        };
        let said = ready!(Pin::new(done).poll(cx));
        self.done = None;
        Poll::Ready(outcome(said).err().map(Err))
    }
}

/// The producer's end, an `AsyncWrite` (wrap it in a `BufWriter`: every write is one piece).
#[derive(Debug)]
pub struct ChannelWriter {
    tx: PollSender<Bytes>,
    done: oneshot::Sender<Outcome>,
}

impl ChannelWriter {
    /// Ends the body: cleanly with `Ok`, as a broken response with `Err`. Never waits.
    pub fn finish(self, outcome: Outcome) {
        let _ = self.done.send(outcome);
    }

    /// The connection dropped the body (the client went away or stopped reading).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if ready!(self.tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(gone()));
        }
        match self.tx.send_item(Bytes::copy_from_slice(buf)) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(_) => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the client went away")
}
