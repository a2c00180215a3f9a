//! files.
use firepit_wire::guest::{Response, WireError, ErrorKind, WriteOptions};
use crate::conn::Stream;
fn todo() -> Result<Response, WireError> { Err(WireError::new(ErrorKind::Unsupported, "todo")) }
/// x
pub async fn read(_p: &str, _s: &mut Stream) -> Result<Response, WireError> { todo() }
/// x
pub async fn write(_p: &str, _o: WriteOptions, _s: &mut Stream) -> Result<Response, WireError> { todo() }
/// x
pub async fn list_dir(_p: String) -> Result<Response, WireError> { todo() }
/// x
pub async fn stat(_p: String) -> Result<Response, WireError> { todo() }
/// x
pub async fn mkdir(_p: String, _b: bool) -> Result<Response, WireError> { todo() }
/// x
pub async fn remove(_p: String, _b: bool) -> Result<Response, WireError> { todo() }
/// x
pub async fn rename(_p: String, _b: String) -> Result<Response, WireError> { todo() }
