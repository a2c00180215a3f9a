//! The agent's browser: Chromium inside a session's machine, driven from the
//! daemon over the Chrome DevTools Protocol.
//!
//! - [`launch`]: starting Chromium as a guest service and finding its page,
//!   through a stream the caller dials inside the machine (the machine
//!   backend's `dial`).
//! - [`cdp`]: the CDP client (commands, answers by id, events) over one
//!   WebSocket on that stream.
//! - [`page`]: navigation, the snapshot with stable element refs, actions,
//!   JavaScript, reports (console, exceptions, failed requests, dialogs),
//!   screenshots and the screencast.
//! - [`browser`]: one session's browser, started on first use, reused, and
//!   restarted with a note when it went away.
//!
//! Nothing here knows the daemon: it takes a `GuestClient` and a dial function.
#![warn(missing_docs)]

pub mod browser;
pub mod cdp;
mod error;
pub mod http;
mod js;
pub mod launch;
pub mod page;

pub use browser::{Browser, RESTARTED};
pub use error::Error;
pub use launch::{DEVTOOLS_PORT, Dial, Launcher, attach};
pub use page::{Frame, Observation, Page, Report, Screencast};
