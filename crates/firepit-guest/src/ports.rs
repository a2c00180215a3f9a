//! ports.
use std::collections::BTreeSet;
use firepit_wire::guest::{Response, WireError, ErrorKind, PortInfo};
use crate::conn::Stream;
/// x
pub fn listening() -> std::io::Result<BTreeSet<PortInfo>> { Ok(BTreeSet::new()) }
/// x
pub async fn watch(_s: &mut Stream) -> Result<Response, WireError> { Err(WireError::new(ErrorKind::Unsupported, "todo")) }
