//! Whole frames over a byte stream (TCP or TLS): a read buffer that holds at most one frame's
//! limit plus what one read brings, and a write buffer flushed per batch of frames.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{self, Frame, FrameError, LENGTH_PREFIX};

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    ClosedMidFrame { buffered: usize },
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug)]
pub(crate) struct Connection<S> {
    stream: S,
    read: BytesMut,
    write: BytesMut,
    max_frame: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(crate) fn new(stream: S, max_frame: usize) -> Self {
        Self {
            stream,
            read: BytesMut::with_capacity(8 * 1024),
            write: BytesMut::with_capacity(8 * 1024),
            max_frame,
        }
    }

    /// The next frame; `Ok(None)` when the peer closed between frames. Cancel-safe: a partial
    /// frame stays buffered for the next call (used inside `select!`).
    pub(crate) async fn read_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(len) = frame::complete_len(&self.read, self.max_frame)? {
                let bytes = self.read.split_to(len);
                return Ok(Some(frame::decode(&bytes[LENGTH_PREFIX..])?));
            }
            if self.read.capacity() - self.read.len() < 4096 {
                self.read.reserve(8 * 1024);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return if self.read.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::ClosedMidFrame {
                        buffered: self.read.len(),
                    })
                };
            }
        }
    }

    /// Appends an encoded frame (prefix included) to the write buffer.
    pub(crate) fn buffer(&mut self, frame: &[u8]) {
        self.write.extend_from_slice(frame);
    }

    /// Writes everything buffered.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        while self.write.has_remaining() {
            let n = self.stream.write(&self.write).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.write.advance(n);
        }
        self.stream.flush().await
    }

    /// Encodes, buffers and writes one frame.
    pub(crate) async fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let bytes = frame::encode(frame, self.max_frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.buffer(&bytes);
        self.flush().await
    }

    /// Flushes and closes our direction, so the peer reads what we wrote before the close.
    pub(crate) async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_split_across_reads_are_reassembled() {
        let (a, b) = tokio::io::duplex(7);
        let mut writer = Connection::new(a, 1024);
        let mut reader = Connection::new(b, 1024);
        let frames = [
            Frame::Ack { id: 1 },
            Frame::Nack {
                id: 2,
                reason: "x".repeat(300),
                refusal: crate::message::Refusal::NotNow,
            },
            Frame::Heartbeat,
        ];
        let expected = frames.clone();
        let write = tokio::spawn(async move {
            for f in &frames {
                writer.send(f).await.unwrap();
            }
            writer.close().await;
        });
        for f in expected {
            assert_eq!(reader.read_frame().await.unwrap(), Some(f));
        }
        assert_eq!(reader.read_frame().await.unwrap(), None);
        write.await.unwrap();
    }

    #[tokio::test]
    async fn a_close_mid_frame_and_an_oversized_length_are_errors() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut reader = Connection::new(b, 1024);
        a.write_all(&[0, 0, 0, 10, b'{']).await.unwrap();
        drop(a);
        let e = reader.read_frame().await.unwrap_err();
        assert!(
            matches!(e, ReadError::ClosedMidFrame { buffered: 5 }),
            "{e}"
        );

        let (mut a, b) = tokio::io::duplex(64);
        let mut reader = Connection::new(b, 1024);
        a.write_all(&[0, 0, 4, 1]).await.unwrap();
        let e = reader.read_frame().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "frame of 1025 bytes is larger than the limit of 1024 bytes"
        );
    }
}
