//! `firepit up`: runs the daemon in the foreground.
//!
//! First run: makes the data dir, writes the guest executable into it, builds
//! the default image if it is missing (with progress), then listens and prints
//! the login URL. Machines keep running when the daemon stops; the next `up`
//! adopts them.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use firepit_daemon::config::DiskPool;
use firepit_daemon::{App, Config};

use crate::cli::UpArgs;
use crate::settings::DAEMON_FILE;
use crate::trust::Trust;

/// Writes the embedded guest executable under the data dir, replacing an older one.
pub fn install_guest(data_dir: &Path) -> Result<PathBuf> {
    let dir = data_dir.join("bin");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("firepit-guest");
    if std::fs::read(&path).ok().as_deref() == Some(firepit_guest_bin::GUEST) {
        return Ok(path);
    }
    let tmp = dir.join(format!(".firepit-guest.{}", std::process::id()));
    std::fs::write(&tmp, firepit_guest_bin::GUEST)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("installing {}", path.display()))?;
    Ok(path)
}

/// The settings `up` runs the daemon with.
pub fn config(data_dir: &Path, args: &UpArgs, trust: &Trust) -> Result<Config> {
    let launcher = std::env::current_exe().context("finding this executable")?;
    let guest = install_guest(data_dir)?;
    let mut config = Config::new(data_dir.to_owned(), launcher, guest);
    config.listen = args.listen;
    config.domain = args.domain.clone();
    config.public_origin = args
        .public_url
        .as_deref()
        .map(firepit_daemon::config::PublicOrigin::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))?;
    config.default_image = args.default_image.clone();
    config.instance = args.instance.clone();
    config.disk_pool = match args.disk_pool_size.trim() {
        "auto" => DiskPool::Auto,
        "off" => DiskPool::Off,
        size => DiskPool::Size(
            crate::settings::parse_size(size).context("--disk-pool-size: auto, off or a size")?,
        ),
    };
    config.default_limits.disk_bytes = match config.disk_pool {
        DiskPool::Off => None,
        _ => Some(crate::settings::parse_size(&args.default_disk).context("--default-disk")?),
    };
    config.allow_net = args.allow_net.clone();
    config.extra_ca = trust.cas.pem();
    config.proxy = trust.proxy.clone();
    config.subnet = args.subnet;
    config.model = firepit_agent::ModelConfig::from_env();
    config.forge = firepit_forge::ForgeConfig::from_env()
        .map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))?;
    if let Some(dir) = &args.images_dir {
        config.images_dir = dir.clone();
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))?;
    Ok(config)
}

/// `firepit up`
pub async fn up(data_dir: &Path, args: &UpArgs) -> Result<()> {
    // Root-only from the start (the daemon fixes an older one's mode too).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
    tokio::task::spawn_blocking(|| {
        firepit_image::host::install_missing(&mut |m| eprintln!("firepit: {m}"))
    })
    .await
    .context("installing host packages")??;
    let trust = Trust::resolve(args)?;
    for w in &trust.warnings {
        eprintln!("firepit: {w}");
    }
    let mut config = config(data_dir, args, &trust)?;
    let images_dir = config.images_dir.clone();
    let image = config.default_image.clone();
    let build = trust.build_options(data_dir)?;
    tokio::task::spawn_blocking(move || crate::commands::image::ensure(&images_dir, &image, build))
        .await
        .context("building the default image")??;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another firepit running? Pick another with --listen",
                config.listen
            )
        })?;
    let addr = listener.local_addr()?;
    // Preview URLs name the port the listener got (it may have been 0).
    config.public_port = addr.port();
    let app = App::open(config)
        .await
        .map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))?;
    let url = format!("http://{}", display_addr(addr));
    let daemon_file = data_dir.join(DAEMON_FILE);
    // Written whole, then renamed into place: a client never reads half of it.
    let daemon_json = serde_json::json!({ "url": url, "pid": std::process::id() }).to_string();
    firepit_util::write_private(&daemon_file, daemon_json.as_bytes())
        .with_context(|| format!("writing {}", daemon_file.display()))?;
    let login = match &app.config().public_origin {
        Some(p) => format!("{}/?token={}", p.origin(), app.token()),
        None => format!("http://localhost:{}/?token={}", addr.port(), app.token()),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "firepit is up: {login}")?;
    writeln!(out, "API: {url}   data: {}", data_dir.display())?;
    writeln!(
        out,
        "E2B SDK: E2B_API_URL={url} E2B_SANDBOX_URL={url} E2B_API_KEY={}",
        firepit_e2b::api_key(app.token())
    )?;
    match app.agents().model() {
        Some(m) => writeln!(
            out,
            "agent: {} {} at {}",
            m.kind.name(),
            m.model,
            m.base_url
        )?,
        None => writeln!(out, "agent: {}", firepit_agent::CONFIGURE_HELP)?,
    }
    let forge = &app.config().forge;
    match &forge.token {
        Some(_) => writeln!(
            out,
            "forge: {} (token set; it stays in the daemon)",
            forge.web_url
        )?,
        None => writeln!(out, "forge: {}", firepit_forge::CONFIGURE_HELP)?,
    }
    for line in trust.summary() {
        writeln!(out, "{line}")?;
    }
    drop(out);

    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!(
            "firepit: shutting down; machines keep running and the next `firepit up` adopts them"
        );
    };
    let served = firepit_daemon::serve(listener, app, shutdown).await;
    let _ = std::fs::remove_file(&daemon_file);
    served.map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))
}

fn display_addr(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}
