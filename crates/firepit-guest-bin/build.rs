//! Builds `firepit-guest` as a static executable and hands its path to the crate.
//!
//! The guest runs as PID 1 inside machines whose root filesystem is an image with
//! its own libc (or none), so it must not link dynamically against the host's.
//! It is built by a nested cargo in a target directory of its own (so the outer
//! build's lock is not contended), for the host triple with `+crt-static`:
//! glibc's static archive is enough, no extra toolchain is needed.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("workspace root exists");
    for watched in [
        "crates/firepit-guest",
        "crates/firepit-wire",
        "crates/firepit-util",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=FIREPIT_GUEST_PROFILE");

    let target = env::var("TARGET").expect("set by cargo");
    // The outer profile decides: debug builds of the workspace get a debug guest,
    // which builds faster; release builds get a release guest.
    let profile = env::var("FIREPIT_GUEST_PROFILE")
        .unwrap_or_else(|_| env::var("PROFILE").unwrap_or_else(|_| "release".into()));
    let profile = if profile == "debug" { "dev" } else { "release" };
    let target_dir = workspace.join("target/guest");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "-p",
            "firepit-guest",
            "--profile",
            profile,
            "--target",
        ])
        .arg(&target)
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags of the outer build must not leak into the nested one.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env(
            format!(
                "CARGO_TARGET_{}_RUSTFLAGS",
                target.to_uppercase().replace('-', "_")
            ),
            "-C target-feature=+crt-static",
        );
    let status = cmd.status().expect("cargo can be run from a build script");
    if !status.success() {
        panic!("building firepit-guest statically failed ({status}); see the output above");
    }
    let dir = if profile == "dev" { "debug" } else { "release" };
    let binary = target_dir.join(&target).join(dir).join("firepit-guest");
    assert!(
        binary.is_file(),
        "firepit-guest was not produced at {}",
        binary.display()
    );
    println!("cargo:rustc-env=FIREPIT_GUEST_PATH={}", binary.display());
}
