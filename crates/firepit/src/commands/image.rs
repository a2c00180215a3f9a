//! `firepit image build|pull|import|ls|rm`: images are built (from recipes
//! here, from Dockerfiles in `image_build`) or pulled and imported (in
//! `image_oci`) on this host, into the data dir, with progress on standard
//! error. The daemon need not run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use firepit_image::{BuildOptions, Image, ImageStore, Progress, Recipe};

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

/// Builds `name` in `images_dir` with `options` unless it is there already
/// (used by `up`).
pub fn ensure(images_dir: &Path, name: &str, options: firepit_image::BuildOptions) -> Result<()> {
    let store = ImageStore::open(images_dir)?.with_options(options);
    if let Ok(image) = store.get(name) {
        if let Some(note) = older_build(&image) {
            eprintln!("firepit: {note}");
        }
        return Ok(());
    }
    eprintln!(
        "firepit: image {name:?} is missing; building it now (first run only; `default` downloads about 640 MiB and takes some minutes)"
    );
    let recipe = Recipe::builtin(name)?;
    store.build(&recipe, &mut reporter(name))?;
    Ok(())
}

/// A note for an image of a built-in recipe that an older firepit built (its manifest has no
/// versions): the recipe has moved on (`default` now takes the newest Debian stable, with
/// current toolchains and PostgreSQL), and the way to the new one that keeps the old for the
/// sessions on it.
fn older_build(image: &Image) -> Option<String> {
    let m = &image.manifest;
    if !m.versions.is_empty() || m.recipe != "default" {
        return None;
    }
    Some(format!(
        "image {:?} was built by an older firepit (Debian {}); the `default` recipe now builds the newest Debian stable with current toolchains and PostgreSQL. Sessions keep the image they use: build the new one beside it with `firepit image build default --as default-2` and start `up` with `--default-image default-2`",
        image.name, m.suite
    ))
}

/// The sessions of this data dir, by the image they use.
pub fn sessions_by_image(data_dir: &Path) -> Result<super::image_oci::Users> {
    let mut out = super::image_oci::Users::new();
    let db = data_dir.join("firepit.db");
    if !db.exists() {
        return Ok(out);
    }
    let chain = |e: firepit_daemon::Error| anyhow::anyhow!(firepit_daemon::error::chain(&e));
    let sessions = firepit_daemon::store::Store::open(&db)
        .map_err(chain)?
        .sessions()
        .map_err(chain)?;
    for s in sessions {
        out.entry(s.image).or_default().push(s.id);
    }
    Ok(out)
}

/// Refuses to replace or remove an image that sessions of this data dir use:
/// their machines' root filesystems are layered on it.
pub fn refuse_if_in_use(data_dir: &Path, name: &str) -> Result<()> {
    let by_image = sessions_by_image(data_dir)?;
    let users: Vec<_> = by_image
        .get(name)
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if !users.is_empty() {
        anyhow::bail!(
            "image {name:?} is in use by session(s) {}; remove them first with `firepit rm ID`, \
             or build the new one beside it with `--as OTHER-NAME` (and `up --default-image OTHER-NAME`)",
            users.join(", ")
        );
    }
    Ok(())
}

/// `firepit image …`
pub async fn run(data_dir: &Path, cmd: ImageCommand) -> Result<()> {
    if let ImageCommand::Pull(args) = cmd {
        return super::image_oci::pull(data_dir, args).await;
    }
    if let ImageCommand::Build {
        name,
        file: Some(file),
        context,
        build_arg,
        target,
        images_dir,
        ..
    } = cmd
    {
        let args = super::image_build::BuildArgs {
            name,
            file,
            context,
            build_args: build_arg,
            target,
            images_dir,
        };
        let (data_dir, handle) = (data_dir.to_owned(), tokio::runtime::Handle::current());
        return tokio::task::spawn_blocking(move || {
            super::image_build::build(&data_dir, args, handle)
        })
        .await?;
    }
    let data_dir = data_dir.to_owned();
    tokio::task::spawn_blocking(move || run_blocking(&data_dir, cmd)).await?
}

fn run_blocking(data_dir: &Path, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Build {
            name,
            suite,
            as_name,
            images_dir,
            ..
        } => {
            let mut recipe = Recipe::builtin(&name)?;
            if let Some(other) = &as_name {
                recipe = recipe.named(other)?;
            }
            refuse_if_in_use(data_dir, &recipe.name)?;
            let mut store = store(data_dir, images_dir)?;
            if let Some(suite) = suite {
                let options = BuildOptions {
                    suite: Some(suite),
                    ..store.options().clone()
                };
                store = store.with_options(options);
            }
            let started = std::time::Instant::now();
            let image = store.build(&recipe, &mut reporter(&recipe.name))?;
            println!(
                "built image {} (Debian {}, {} MiB) in {} ({:.0}s)",
                image.name,
                image.manifest.suite,
                image.manifest.size_bytes >> 20,
                image.rootfs.display(),
                started.elapsed().as_secs_f64()
            );
        }
        ImageCommand::Ls { images_dir } => {
            super::image_oci::ls(data_dir, &store(data_dir, images_dir)?)?;
        }
        ImageCommand::Rm { name, images_dir } => {
            refuse_if_in_use(data_dir, &name)?;
            let store = store(data_dir, images_dir)?;
            store.remove(&name)?;
            let freed = super::image_oci::collect_garbage(&store)?;
            println!(
                "removed image {name}; {} MiB of layers no image uses were freed",
                freed >> 20
            );
        }
        ImageCommand::Import(args) => super::image_oci::import(data_dir, args)?,
        ImageCommand::Pull(_) => anyhow::bail!("a pull runs on the async runtime"),
        // Answered by the daemon (`main.rs` sends it there).
        ImageCommand::Save { .. } => anyhow::bail!("`firepit image save` needs the daemon"),
    }
    Ok(())
}

/// What `image ls` shows under an image's row: its suite (built-in recipes),
/// when it was made, and the versions of its tools where its manifest records
/// them; empty when there is nothing to say.
pub fn details(image: &Image) -> String {
    let m = &image.manifest;
    let mut parts = Vec::new();
    if !m.suite.is_empty() {
        parts.push(format!("Debian {}", m.suite));
    }
    if m.created > 0 {
        parts.push(format!("made {}", created(m.created)));
    }
    let tools: Vec<String> = m
        .tools()
        .into_iter()
        .map(|(what, version)| {
            let short = what.split(" (").next().unwrap_or(what);
            format!("{short} {version}")
        })
        .collect();
    if !tools.is_empty() {
        parts.push(tools.join(", "));
    }
    parts.join("; ")
}

/// A build time as a UTC date and minute (`2026-11-29 20:41`).
fn created(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(created(0), "1970-01-01 00:00");
        assert_eq!(created(1_795_973_442), "2026-11-29 17:30");
        assert_eq!(created(951_782_400), "2000-02-29 00:00");
    }

    #[test]
    fn an_older_default_image_gets_a_note() {
        let image = |recipe: &str, versions: &[(&str, &str)]| Image {
            name: "default".into(),
            rootfs: "/x".into(),
            manifest: firepit_image::Manifest {
                name: "default".into(),
                recipe: recipe.into(),
                suite: "bookworm".into(),
                versions: versions
                    .iter()
                    .map(|(p, v)| ((*p).into(), (*v).into()))
                    .collect(),
                ..Default::default()
            },
        };
        let note = older_build(&image("default", &[])).unwrap();
        assert!(
            note.contains("Debian bookworm") && note.contains("--as default-2"),
            "{note}"
        );
        assert_eq!(
            older_build(&image("default", &[("nodejs", "20.19.2")])),
            None
        );
        assert_eq!(older_build(&image("minimal", &[])), None);
    }

    #[test]
    fn details_show_suite_date_and_versions() {
        let mut m = firepit_image::Manifest {
            name: "default".into(),
            suite: "trixie".into(),
            size_bytes: 3 << 30,
            created: 1_795_973_442,
            ..Default::default()
        };
        m.versions.insert("nodejs".into(), "20.19.2+dfsg-1".into());
        m.versions.insert("elixir".into(), "1.18.3.dfsg-1".into());
        let pulled = firepit_image::Manifest {
            name: "app".into(),
            ..Default::default()
        };
        let [default, app] = [m, pulled].map(|manifest| Image {
            name: manifest.name.clone(),
            rootfs: "/x".into(),
            manifest,
        });
        assert_eq!(
            details(&default),
            "Debian trixie; made 2026-11-29 17:30; Node.js 20.19.2, Elixir 1.18.3"
        );
        assert_eq!(details(&app), "");
    }
}
