//! services.
use firepit_wire::guest::{Response, WireError, ErrorKind, ServiceInfo, ServiceSpec};
use crate::conn::Stream;
/// x
#[derive(Default)]
pub struct Services {}
fn todo<T>() -> Result<T, WireError> { Err(WireError::new(ErrorKind::Unsupported, "todo")) }
impl Services {
    /// x
    pub fn start(&self, _s: ServiceSpec) -> Result<ServiceInfo, WireError> { todo() }
    /// x
    pub async fn stop(&self, _n: &str) -> Result<(), WireError> { todo() }
    /// x
    pub fn list(&self) -> Vec<ServiceInfo> { vec![] }
    /// x
    pub async fn logs(&self, _n: &str, _t: Option<u64>, _f: bool, _s: &mut Stream) -> Result<Response, WireError> { todo() }
}
