//! A TCP relay between a dialing and a listening end that can cut connections: mid-frame
//! after some bytes, on demand, or after passing only the first frames of the listener's
//! answers (so the dialer never sees its acknowledgements).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// What the relay does to one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    Pass,
    /// Closes the connection once this many bytes went from the dialer to the listener.
    CutAfter {
        bytes: usize,
    },
    /// Passes only the first `frames` frames from the listener to the dialer (Hello and
    /// Accept are two), swallowing the rest.
    HoldReplies {
        frames: usize,
    },
}

#[derive(Debug)]
struct State {
    /// Modes of the next connections, in order; `Pass` after them.
    modes: std::collections::VecDeque<Mode>,
    conns: Vec<AbortHandle>,
    accepted: usize,
}

pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Relay {
    /// A relay whose first connections get `modes`, the rest `Pass`.
    pub(crate) async fn start(listen: SocketAddr, upstream: SocketAddr, modes: Vec<Mode>) -> Self {
        let listener = TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            modes: modes.into(),
            conns: Vec::new(),
            accepted: 0,
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    return;
                };
                let Ok(up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let mut s = st.lock().unwrap();
                s.accepted += 1;
                let mode = s.modes.pop_front().unwrap_or(Mode::Pass);
                let conn = tokio::spawn(relay(down, up, mode));
                s.conns.push(conn.abort_handle());
            }
        });
        Self { addr, state, task }
    }

    /// Closes every connection now.
    pub(crate) fn cut(&self) {
        for c in self.state.lock().unwrap().conns.drain(..) {
            c.abort();
        }
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.state.lock().unwrap().accepted
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn relay(down: TcpStream, up: TcpStream, mode: Mode) {
    let (down_r, down_w) = down.into_split();
    let (up_r, up_w) = up.into_split();
    let limit = match mode {
        Mode::CutAfter { bytes } => Some(bytes),
        _ => None,
    };
    let replies = match mode {
        Mode::HoldReplies { frames } => Some(frames),
        _ => None,
    };
    // Whichever direction ends first ends both: the sockets drop together.
    tokio::select! {
        () = pump(down_r, up_w, limit) => {}
        () = async {
            match replies {
                Some(frames) => hold(up_r, down_w, frames).await,
                None => pump(up_r, down_w, None).await,
            }
        } => {}
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, limit: Option<usize>) {
    let mut left = limit.unwrap_or(usize::MAX);
    let mut buf = vec![0u8; 4096];
    while left > 0 {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n.min(left),
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        left -= n;
    }
}

async fn hold(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, frames: usize) {
    let mut passed = 0;
    loop {
        let mut len = [0u8; 4];
        if from.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        if from.read_exact(&mut body).await.is_err() {
            return;
        }
        if passed < frames {
            passed += 1;
            if to.write_all(&len).await.is_err() || to.write_all(&body).await.is_err() {
                return;
            }
        }
    }
}
