//! Response bodies: small ones whole, large ones streamed from a producer task through a bounded
//! channel. A producer's failure reaches the client as a broken body (hyper ends the connection
//! without the closing chunk), never as a shorter document that parses; a client that stops
//! reading for `stall` seconds ends the producer, which would otherwise wait forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio::time::Sleep;
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

type Piece = Result<Bytes, io::Error>;

/// A streamed body and the writer its producer writes into.
pub fn channel(stall: Duration) -> (ChannelWriter, ChannelBody) {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let writer = ChannelWriter {
        failure: tx.clone(),
        tx: PollSender::new(tx),
        stall,
        timer: None,
    };
    (writer, ChannelBody { rx, head: None })
}

/// The connection's end: yields what the producer wrote, then its error if it failed.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Piece>,
    /// The first piece, received by [`ChannelBody::started`] and sent first.
    head: Option<Bytes>,
}

impl ChannelBody {
    /// Waits for the producer's first piece, so that a producer failing before any byte
    /// becomes an error status instead of a broken 200. `Ok(None)`: it wrote nothing at all.
    pub async fn started(mut self) -> Result<Option<Self>, io::Error> {
        match self.rx.recv().await {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(first)) => {
                self.head = Some(first);
                Ok(Some(self))
            }
        }
    }
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
        Poll::Ready(ready!(self.rx.poll_recv(cx)).map(|piece| piece.map(Frame::data)))
    }
}

/// The producer's end, an `AsyncWrite` (wrap it in a `BufWriter`: every write is one piece).
#[derive(Debug)]
pub struct ChannelWriter {
    tx: PollSender<Piece>,
    /// The same channel, to send the producer's error after its last piece.
    failure: mpsc::Sender<Piece>,
    stall: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl ChannelWriter {
    /// Ends the body as a failure: the client sees a broken response. A client already gone
    /// needs no telling.
    pub async fn fail(self, error: io::Error) {
        let _ = self.failure.send(Err(error)).await;
    }
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.tx.poll_reserve(cx) {
            Poll::Ready(Ok(())) => {
                self.timer = None;
                let piece = Ok(Bytes::copy_from_slice(buf));
                match self.tx.send_item(piece) {
                    Ok(()) => Poll::Ready(Ok(buf.len())),
                    Err(_) => Poll::Ready(Err(gone())),
                }
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(gone())),
            Poll::Pending => {
                let stall = self.stall;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {} s", stall.as_secs()),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
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
