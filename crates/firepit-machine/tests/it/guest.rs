//! Machines running the real guest: reachable at their guest address, and how
//! long a new machine takes to give its first exec output.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use firepit_guest_client::{ExecEvent, ExecRequest, GuestClient};
use firepit_machine::{Backend, GuestAddress, Network};

use crate::harness::{backend, shared, spec};

async fn connect(path: &std::path::Path, deadline: Instant) -> GuestClient {
    loop {
        match GuestClient::connect_unix(path).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "guest did not answer: {e}");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    }
}

#[test]
fn real_guest_answers_and_first_exec_output_is_fast() {
    let _g = shared();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(cycles());
}

async fn cycles() {
    let mut times = Vec::new();
    for i in 0..15 {
        let mut s = spec(
            &format!("it-guest-{i}"),
            if i % 2 == 0 {
                Network::Nat
            } else {
                Network::None
            },
        );
        s.guest = PathBuf::from(firepit_guest_bin::GUEST_BUILD_PATH);
        let _ = backend().destroy(&s.id);
        let t = Instant::now();
        let info = backend().create(&s).unwrap();
        let GuestAddress::Unix { path: sock, .. } = info.guest;
        let client = connect(&sock, t + Duration::from_secs(10)).await;
        let mut exec = client
            .exec(ExecRequest::shell("echo hi-from-$(hostname)"))
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Some(ev) = exec.next_event().await.unwrap() {
            match ev {
                ExecEvent::Stdout(b) => {
                    if out.is_empty() {
                        times.push(t.elapsed());
                    }
                    out.extend_from_slice(&b);
                }
                ExecEvent::Stderr(_) => {}
                ExecEvent::Exit(_) => break,
            }
        }
        assert_eq!(
            String::from_utf8_lossy(&out).trim(),
            format!("hi-from-it-guest-{i}")
        );
        drop(client);
        let t = Instant::now();
        backend().destroy(&s.id).unwrap();
        let stop = t.elapsed();
        // The grace (2 s here) and a little: the guest itself may use all of it.
        assert!(stop < Duration::from_secs(3), "stopping took {stop:?}");
    }
    times.sort();
    eprintln!(
        "create -> first exec output: p50 {:?}, min {:?}, max {:?}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
