//! Dispatch of a stream's opening request to the operation that handles it.

use std::sync::Arc;

use firepit_wire::guest::{ErrorKind, Request, Response, WireError};

use crate::Guest;
use crate::conn::Stream;

/// Runs the operation `req` opened on `stream` and ends the stream with its final answer.
pub async fn dispatch(req: Request, mut stream: Stream, guest: Arc<Guest>) {
    let result = match req {
        Request::Info => Ok(Response::Info(guest.info())),
        Request::Exec(r) => crate::exec::run(r, &mut stream).await,
        Request::PtyAttach { name, create } => {
            guest.ptys.attach(&guest, &name, create, &mut stream).await
        }
        Request::PtyList => Ok(Response::Ptys {
            ptys: guest.ptys.list(),
        }),
        Request::PtyClose { name } => guest.ptys.close(&name).map(|()| Response::Done),
        Request::ReadFile { path } => crate::files::read(&path, &mut stream).await,
        Request::WriteFile { path, opts } => crate::files::write(&path, opts, &mut stream).await,
        Request::ListDir { path } => crate::files::list_dir(path).await,
        Request::Stat { path } => crate::files::stat(path).await,
        Request::Mkdir { path, parents } => crate::files::mkdir(path, parents).await,
        Request::Remove { path, recursive } => crate::files::remove(path, recursive).await,
        Request::Rename { from, to } => crate::files::rename(from, to).await,
        Request::ListPorts => match crate::ports::listening() {
            Ok(ports) => {
                stream
                    .send(&Response::Ports {
                        ports: ports.into_iter().collect(),
                    })
                    .await;
                Ok(Response::Done)
            }
            Err(e) => Err(WireError::io("listing ports", &e)),
        },
        Request::WatchPorts => crate::ports::watch(&mut stream).await,
        Request::ServiceStart(spec) => guest.services.start(spec).map(Response::Service),
        Request::ServiceStop { name } => guest.services.stop(&name).await.map(|()| Response::Done),
        Request::ServiceClearLog { name } => {
            guest.services.clear_log(&name).map(|()| Response::Done)
        }
        Request::ServiceList => Ok(Response::Services {
            services: guest.services.list(),
        }),
        Request::ServiceLogs {
            name,
            tail_bytes,
            follow,
        } => {
            guest
                .services
                .logs(&name, tail_bytes, follow, &mut stream)
                .await
        }
        Request::WatchServices => guest.services.watch(&mut stream).await,
        Request::WatchFiles { root } => crate::watch::watch(root, &mut stream).await,
        Request::Cancel
        | Request::StdinClose
        | Request::Kill { .. }
        | Request::PtyResize { .. }
        | Request::WriteFinish => Err(WireError::new(
            ErrorKind::Protocol,
            "this request does not open a stream",
        )),
    };
    stream.finish(result.unwrap_or_else(Response::Error)).await;
}
