//! `firepit image build|ls|rm`: images are built on this host, into the data
//! dir, with progress on standard error. The daemon need not run.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use firepit_image::{ImageStore, Progress, Recipe};

use crate::cli::ImageCommand;

fn store(data_dir: &Path, images_dir: Option<PathBuf>) -> Result<ImageStore> {
    let dir = images_dir.unwrap_or_else(|| data_dir.join("images"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(ImageStore::open(&dir)?)
}

/// Prints build progress (each report carries the elapsed time): a live
/// line on a terminal, a line per report otherwise. The line ends when the
/// reporter is dropped.
fn reporter(name: &str) -> impl FnMut(Progress) + use<> {
    let mut line = firepit_progress::Progress::phases(format!("image {name}"));
    move |p: Progress| line.message(p.to_string())
}

/// Builds `name` in `images_dir` unless it is there already (used by `up`).
pub fn ensure(images_dir: &Path, name: &str) -> Result<()> {
    let store = ImageStore::open(images_dir)?;
    if store.get(name).is_ok() {
        return Ok(());
    }
    eprintln!(
        "firepit: image {name:?} is missing; building it now (first run only; this takes a few minutes)"
    );
    let recipe = Recipe::builtin(name)?;
    store.build(&recipe, &mut reporter(name))?;
    Ok(())
}

/// Refuses to replace or remove an image that sessions of this data dir use:
/// their machines' root filesystems are layered on it.
fn refuse_if_in_use(data_dir: &Path, name: &str) -> Result<()> {
    let db = data_dir.join("firepit.db");
    if !db.exists() {
        return Ok(());
    }
    let chain = |e: firepit_daemon::Error| anyhow::anyhow!(firepit_daemon::error::chain(&e));
    let sessions = firepit_daemon::store::Store::open(&db)
        .map_err(chain)?
        .sessions()
        .map_err(chain)?;
    let users: Vec<_> = sessions
        .iter()
        .filter(|s| s.image == name)
        .map(|s| s.id.as_str())
        .collect();
    if !users.is_empty() {
        anyhow::bail!(
            "image {name:?} is in use by session(s) {}; remove them first with `firepit rm ID`",
            users.join(", ")
        );
    }
    Ok(())
}

/// `firepit image …`
pub async fn run(data_dir: &Path, cmd: ImageCommand) -> Result<()> {
    let data_dir = data_dir.to_owned();
    tokio::task::spawn_blocking(move || run_blocking(&data_dir, cmd)).await?
}

fn run_blocking(data_dir: &Path, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Build { name, images_dir } => {
            refuse_if_in_use(data_dir, &name)?;
            let store = store(data_dir, images_dir)?;
            let recipe = Recipe::builtin(&name)?;
            let image = store.build(&recipe, &mut reporter(&name))?;
            println!(
                "built image {} ({} MiB) in {}",
                image.name,
                image.manifest.size_bytes >> 20,
                image.rootfs.display()
            );
        }
        ImageCommand::Ls { images_dir } => {
            let store = store(data_dir, images_dir)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{:<12} {:>9} CREATED", "NAME", "SIZE")?;
            for image in store.list()? {
                writeln!(
                    out,
                    "{:<12} {:>8}M {}",
                    image.name,
                    image.manifest.size_bytes >> 20,
                    image.manifest.created
                )?;
            }
        }
        ImageCommand::Rm { name, images_dir } => {
            refuse_if_in_use(data_dir, &name)?;
            store(data_dir, images_dir)?.remove(&name)?;
            println!("removed image {name}");
        }
        // Answered by the daemon (`main.rs` sends it there).
        ImageCommand::Save { .. } => anyhow::bail!("`firepit image save` needs the daemon"),
    }
    Ok(())
}
