//! The connection layer: a listener whose connections a handler or the test can cut, so the
//! client sees the connection close with no response bytes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::state::App;

/// Per-connection handle. `cut()` shuts the socket down in both directions through a duplicated
/// descriptor, so the peer sees the connection close with no response bytes.
pub(super) struct ConnHandle {
    pub(super) cut: AtomicBool,
    pub(super) dup: Mutex<Option<std::net::TcpStream>>,
}

impl ConnHandle {
    pub(super) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Some(s) = self.dup.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

pub(super) struct CuttableListener {
    pub(super) inner: tokio::net::TcpListener,
    pub(super) shared: App,
}

pub(super) struct CuttableStream {
    pub(super) inner: tokio::net::TcpStream,
    pub(super) id: u64,
    pub(super) handle: Arc<ConnHandle>,
    pub(super) shared: App,
}

impl CuttableListener {
    pub(super) fn wrap(&self, stream: tokio::net::TcpStream) -> io::Result<CuttableStream> {
        let std_stream = stream.into_std()?;
        let dup = std_stream.try_clone()?;
        let inner = tokio::net::TcpStream::from_std(std_stream)?;
        let _ = inner.set_nodelay(true);
        let id = self.shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(ConnHandle {
            cut: AtomicBool::new(false),
            dup: Mutex::new(Some(dup)),
        });
        self.shared.conns().insert(id, handle.clone());
        Ok(CuttableStream {
            inner,
            id,
            handle,
            shared: self.shared.clone(),
        })
    }
}

impl Listener for CuttableListener {
    type Io = CuttableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => match self.wrap(stream) {
                    Ok(s) => return (s, addr),
                    Err(_) => continue,
                },
                // Like axum's own listener: back off briefly on accept errors (e.g. EMFILE).
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl Drop for CuttableStream {
    fn drop(&mut self) {
        // Close the duplicated descriptor too, or the socket would outlive the connection.
        self.handle
            .dup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.shared.conns().remove(&self.id);
    }
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.handle.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.handle.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.handle.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connect info handed to handlers: the connection's cut switch.
#[derive(Clone)]
pub(super) struct ConnInfo {
    pub(super) handle: Arc<ConnHandle>,
}

impl Connected<IncomingStream<'_, CuttableListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, CuttableListener>) -> Self {
        ConnInfo {
            handle: stream.io().handle.clone(),
        }
    }
}
