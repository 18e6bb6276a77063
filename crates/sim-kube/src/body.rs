//! Response bodies: a whole buffer, or a stream of chunks for watches.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// A response body.
#[derive(Debug)]
pub enum ResBody {
    /// The whole body at once.
    Full(Option<Bytes>),
    /// Chunks as they are produced; ends when the sender is dropped.
    Stream(mpsc::Receiver<Bytes>),
}

impl Body for ResBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ResBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ResBody::Stream(rx) => rx.poll_recv(cx).map(|chunk| chunk.map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            ResBody::Full(None) => SizeHint::with_exact(0),
            ResBody::Stream(_) => SizeHint::default(),
        }
    }
}
