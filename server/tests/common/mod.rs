//! A real `shoal serve` on `127.0.0.1:0` inside the test process, shared by the integration
//! tests (each test file uses what it needs).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::oneshot;

/// A running server; stopped, and its data directory removed, when dropped.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) app: shoal::App,
    stop: Option<oneshot::Sender<()>>,
    data_dir: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A data directory of its own for one server (`tag` names the test file).
pub(crate) fn data_dir(tag: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("shoal-{tag}-test-{}-{n}", std::process::id()))
}

/// Starts a server with `config` on a free loopback port.
pub(crate) async fn serve(config: shoal::ServeConfig) -> Server {
    let data_dir = config.media.data_dir.clone();
    let app = shoal::App::new(&config).expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(shoal::serve(listener, app.clone(), async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        app,
        stop: Some(stop),
        data_dir,
    }
}
