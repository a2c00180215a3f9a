//! Port watching end to end.

use firepit_guest_client::{PortEvent, PortInfo, PortWatch};

use crate::{Harness, guard};

async fn wait_for(w: &mut PortWatch, want: PortEvent) {
    guard(async {
        loop {
            if w.next().await.unwrap().unwrap() == want {
                return;
            }
        }
    })
    .await
}

#[tokio::test]
async fn watch_sees_loopback_and_any_listeners_open_and_close() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let mut w = guard(h.client.watch_ports()).await.unwrap();
    for host in ["127.0.0.1", "0.0.0.0"] {
        let l = std::net::TcpListener::bind(format!("{host}:0")).unwrap();
        let p = PortInfo {
            addr: host.parse().unwrap(),
            port: l.local_addr().unwrap().port(),
        };
        assert!(!w.initial().contains(&p));
        wait_for(&mut w, PortEvent::Opened(p)).await;
        assert!(guard(h.client.list_ports()).await.unwrap().contains(&p));
        drop(l);
        wait_for(&mut w, PortEvent::Closed(p)).await;
    }
}

#[tokio::test]
async fn watch_sees_ipv6_listeners() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let Ok(l) = std::net::TcpListener::bind("[::1]:0") else {
        return;
    }; // no IPv6 here
    let p = PortInfo {
        addr: "::1".parse().unwrap(),
        port: l.local_addr().unwrap().port(),
    };
    let w = guard(h.client.watch_ports()).await.unwrap();
    assert!(w.initial().contains(&p), "{:?}", w.initial());
}
