//! pty sessions.
use std::sync::Arc;
use firepit_wire::guest::{PtyCreate, PtyInfo, Response, WireError, ErrorKind};
use crate::{Guest, conn::Stream};
/// The pty table.
#[derive(Default)]
pub struct Ptys {}
impl Ptys {
    /// Starts main.
    pub fn start_main(&self, _g: &Arc<Guest>) {}
    /// Shutdown.
    pub fn shutdown(&self) {}
    /// List.
    pub fn list(&self) -> Vec<PtyInfo> { vec![] }
    /// Close.
    pub fn close(&self, _name: &str) -> Result<(), WireError> { Err(WireError::new(ErrorKind::Unsupported, "todo")) }
    /// Attach.
    pub async fn attach(&self, _g: &Arc<Guest>, _name: &str, _c: Option<PtyCreate>, _s: &mut Stream) -> Result<Response, WireError> { Err(WireError::new(ErrorKind::Unsupported, "todo")) }
}
