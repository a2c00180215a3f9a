//! What the benchmark binaries share: becoming the machine launcher when the
//! backend re-executes them as one, running an async benchmark to an exit
//! code, and a daemon in the bench's own process on a throwaway data dir.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

/// The `main` of an async benchmark called `name`: the machine launcher
/// when re-executed as one (before anything else, threads above all), else
/// `bench` on a multi-threaded runtime, its error printed as
/// `name: error: …`.
pub fn main_async<F>(name: &str, bench: impl FnOnce() -> F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == firepit_machine::LAUNCH_ARG)
    {
        firepit_machine::launcher_main();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A daemon in this process on a throwaway data dir under /tmp (removed when
/// the returned dir is dropped): the guest written out beside it, images from
/// `images` with `default_image` the default, instance `instance`, and no disk
/// pool (nothing to mount, and leave mounted, in a dir that goes away).
pub async fn throwaway_daemon(
    images: PathBuf,
    default_image: &str,
    instance: &str,
) -> anyhow::Result<(tempfile::TempDir, firepit_daemon::App)> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("fp{instance}"))
        .tempdir_in("/tmp")?;
    let guest_bin = dir.path().join("firepit-guest");
    std::fs::write(&guest_bin, firepit_guest_bin::GUEST)?;
    std::fs::set_permissions(
        &guest_bin,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let mut config =
        firepit_daemon::Config::new(dir.path().join("data"), std::env::current_exe()?, guest_bin);
    config.images_dir = images;
    config.default_image = default_image.into();
    config.instance = Some(instance.into());
    config.disk_pool = firepit_daemon::config::DiskPool::Off;
    config.default_limits.disk_bytes = None;
    let app = firepit_daemon::App::open(config)
        .await
        .map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))?;
    Ok((dir, app))
}
