//! What firepit's tests share, so that no crate's tests keep a copy:
//! - [`model`]: a stand-in model server (Anthropic's and OpenAI's streaming
//!   APIs, scripted replies, the requests it saw);
//! - [`forge`]: a stand-in GitHub (REST under `/api/v3` and real git
//!   repositories over smart HTTP);
//! - [`guest`]: a `firepit-guest` run as a plain process on the host, on a
//!   temporary socket.
//!
//! Everything listens on 127.0.0.1 only. A dev-dependency only.

pub mod forge;
pub mod guest;
pub mod model;

/// Serves `app` on `listener` from a thread of its own (a stand-in server
/// that a daemon reaches while the test blocks on the CLI).
pub fn serve_on_thread(listener: std::net::TcpListener, app: axum::Router) {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
}
