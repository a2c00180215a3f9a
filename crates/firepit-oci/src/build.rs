//! `image build`: a Dockerfile made into an image of the store.
//!
//! The build starts from the `FROM` image's stack of layers (an image without layers of its
//! own, a Debian one say, is linked into the layer store as a whole tree once, see
//! `layers::Tree`), then each step in order: `RUN` through a [`Runner`] (a firepit machine
//! on the stack so far; its changes come back as a layer), `COPY`/`ADD` as a layer made from
//! the context (`.dockerignore` applied; owners root, times 0, so the same files make the
//! same layer), `WORKDIR` as a layer of the directories it makes, the rest as changes of the
//! config. Each layer is stored by digest in the content store and unpacked into the layer
//! store on top of the stack, like a pulled one.
//!
//! **Cache:** every step has a key, the sha256 of the previous step's key and the step's
//! inputs (its text after variable expansion, the `ARG` values a `RUN` sees, the digest of
//! the layer a `COPY` makes); a step whose key has a layer in `<images>/.oci/cache/<key>`
//! reuses it without running. A change in one step changes every later key, so a rebuild
//! redoes only from the first changed step.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use firepit_image::{Image, ImageStore};
use sha2::Digest as _;

use crate::blobs::BlobStore;
use crate::digest::Digest;
use crate::dockerfile::{self, Instruction, Step};
use crate::error::{Error, IoContext, Result};
use crate::install::{self, Record, SourceKind};
use crate::layers::{Layer, LayerStore, Tree};
use crate::spec::{self, Descriptor};

/// Runs a build's `RUN` steps.
pub trait Runner {
    /// Runs `argv` in a machine whose root is the overlay of `lowers` (topmost first, owners
    /// `uid_base + id`), with `env`
    /// added and `cwd` as its working directory, its output shown to the person building;
    /// writes what it changed as an uncompressed layer tar to `layer`. A command that fails
    /// is an error that says how it exited.
    fn run(
        &mut self,
        lowers: &[PathBuf],
        uid_base: u32,
        argv: &[String],
        env: &[(String, String)],
        cwd: &str,
        layer: &mut std::fs::File,
    ) -> std::result::Result<(), String>;
}

/// What a build was asked to do.
pub struct BuildRequest<'a> {
    /// The image to make.
    pub name: &'a str,
    /// The Dockerfile's path (for messages and the image's record).
    pub dockerfile: &'a Path,
    /// The build context.
    pub context: &'a Path,
    /// `--build-arg NAME=value`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to make the image of (name or index); `None`: the last.
    pub target: Option<&'a str>,
}

/// What a step did, for progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEvent {
    /// A step starts: its line and text.
    Start {
        /// Its line.
        line: usize,
        /// Its text.
        text: String,
    },
    /// Its layer came from the cache.
    Cached {
        /// Its line.
        line: usize,
    },
    /// It made a new layer.
    Made {
        /// Its line.
        line: usize,
        /// The layer.
        layer: Digest,
    },
}

/// The state the steps of a stage change.
#[derive(Clone)]
struct State {
    key: Vec<u8>,
    env: Vec<(String, String)>,
    args: BTreeMap<String, String>,
    cwd: String,
    config: spec::RunConfig,
    layers: Vec<Descriptor>,
    diff_ids: Vec<Digest>,
    /// The layers stacked on the tree the build started from (the `FROM` image's, then the
    /// steps'), and the stack's directories, topmost first.
    stack: Vec<Layer>,
    lowers: Vec<PathBuf>,
    /// The whole tree the stack starts from, if any.
    tree: Option<Tree>,
}

/// Where the build's layers are unpacked.
struct Stacker<'a> {
    layers: LayerStore,
    blobs: &'a BlobStore,
}

impl Stacker<'_> {
    fn stack(&self, tree: Option<&Tree>, layers: &[Layer]) -> Result<Vec<PathBuf>> {
        self.layers.stack(self.blobs, tree, layers, &mut |_, _| {})
    }
}

/// A stage: its `FROM` and its steps.
struct Stage<'s> {
    from: &'s Step,
    image: String,
    alias: Option<String>,
    steps: Vec<&'s Step>,
}

/// The stage of `stages` that `name` names: by its `AS` name, or (`by_index`) its index.
fn stage_ref(stages: &[Stage<'_>], name: &str, by_index: bool) -> Option<usize> {
    let name = name.to_ascii_lowercase();
    if by_index && let Ok(i) = name.parse::<usize>() {
        return (i < stages.len()).then_some(i);
    }
    stages
        .iter()
        .position(|s| s.alias.as_deref() == Some(name.as_str()))
}

impl State {
    fn next_key(&mut self, parts: &[&[u8]]) -> String {
        let mut h = sha2::Sha256::new();
        h.update(&self.key);
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        self.key = h.finalize().to_vec();
        self.key.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn vars(&self) -> BTreeMap<String, String> {
        let mut v = self.args.clone();
        v.extend(self.env.iter().cloned());
        v
    }

    fn set_env(&mut self, k: String, v: String) {
        self.env.retain(|(n, _)| *n != k);
        self.env.push((k, v));
    }
}

/// Builds the image `req.name` from its Dockerfile text; `FROM` must name an image of the
/// store (pull it first). `progress` hears of every step.
pub fn build(
    store: &ImageStore,
    text: &str,
    req: &BuildRequest<'_>,
    runner: &mut dyn Runner,
    progress: &mut dyn FnMut(StepEvent),
) -> Result<Image> {
    let steps = dockerfile::parse(text)?;
    let blobs = BlobStore::open(store.dir())?;
    let _hold = blobs.hold()?;
    let cache_dir = store.dir().join(".oci/cache");
    std::fs::create_dir_all(&cache_dir).ctx("creating", &cache_dir)?;
    let uid_base = store.options().uid_base;

    let stacker = Stacker {
        layers: LayerStore::open(store)?,
        blobs: &blobs,
    };

    // ARGs before the first FROM, then the stages.
    let mut pre_args = BTreeMap::new();
    let mut first = 0;
    while let Some(Step {
        instruction: Instruction::Arg(k, d),
        ..
    }) = steps.get(first)
    {
        let v = req
            .build_args
            .get(k)
            .cloned()
            .or(d.clone())
            .unwrap_or_default();
        pre_args.insert(k.clone(), v);
        first += 1;
    }
    let mut stages: Vec<Stage<'_>> = Vec::new();
    for step in &steps[first..] {
        match &step.instruction {
            Instruction::From { image, alias } => stages.push(Stage {
                from: step,
                image: dockerfile::expand(image, &pre_args),
                alias: alias.clone(),
                steps: Vec::new(),
            }),
            _ => match stages.last_mut() {
                Some(stage) => stage.steps.push(step),
                None => return Err(step_error(step.line, "the first instruction must be FROM")),
            },
        }
    }
    let target = match req.target {
        None => stages.len().saturating_sub(1),
        Some(t) => stage_ref(&stages, t, true).ok_or_else(|| {
            step_error(
                stages.first().map_or(1, |s| s.from.line),
                format!("--target {t}: no stage of that name"),
            )
        })?,
    };
    // The stages the target needs (a stage can only name those before it).
    let mut needed = vec![false; stages.len()];
    needed[target] = true;
    for k in (0..=target).rev() {
        if !needed[k] {
            continue;
        }
        let earlier = &stages[..k];
        if let Some(j) = stage_ref(earlier, &stages[k].image, false) {
            needed[j] = true;
        }
        for step in &stages[k].steps {
            if let Instruction::Copy { from: Some(f), .. } = &step.instruction
                && let Some(j) = stage_ref(earlier, f, true)
            {
                needed[j] = true;
            }
        }
    }

    let staged = store.stage(req.name)?;
    let ignore = Ignore::read(req.context)?;
    let tmp_layer = staged.dir().join("layer.tar");
    let mut built: Vec<Option<State>> = vec![None; stages.len()];
    for k in 0..=target {
        if !needed[k] {
            continue;
        }
        let stage = &stages[k];
        progress(StepEvent::Start {
            line: stage.from.line,
            text: stage.from.text.clone(),
        });
        let mut state = match stage_ref(&stages[..k], &stage.image, false) {
            Some(j) => {
                let mut state = built[j].clone().expect("built before");
                state.args = BTreeMap::new();
                state.next_key(&[b"FROM stage"]);
                state
            }
            None => base_state(store, &stacker, &stage.image, stage.from.line)?,
        };
        run_stage(
            Ctx {
                store,
                req,
                stacker: &stacker,
                cache_dir: &cache_dir,
                tmp_layer: &tmp_layer,
                ignore: &ignore,
                pre_args: &pre_args,
                uid_base,
                stages: &stages[..k],
                built: &built[..k],
            },
            &mut state,
            &stage.steps,
            runner,
            progress,
        )?;
        built[k] = Some(state);
    }
    let mut state = built[target].take().expect("the target was built");
    let _ = std::fs::remove_file(&tmp_layer);
    finish_build(store, req, &stacker, staged, &mut state)
}

/// What every step of a build sees.
struct Ctx<'a> {
    store: &'a ImageStore,
    req: &'a BuildRequest<'a>,
    stacker: &'a Stacker<'a>,
    cache_dir: &'a Path,
    tmp_layer: &'a Path,
    ignore: &'a Ignore,
    pre_args: &'a BTreeMap<String, String>,
    uid_base: u32,
    /// The stages before this one, and those of them built.
    stages: &'a [Stage<'a>],
    built: &'a [Option<State>],
}

/// The state a stage starts with on the image `base_name` of the store.
fn base_state(
    store: &ImageStore,
    stacker: &Stacker<'_>,
    base_name: &str,
    line: usize,
) -> Result<State> {
    let blobs = stacker.blobs;
    let uid_base = store.options().uid_base;
    let base = store.get(base_name).map_err(|e| {
        step_error(
            line,
            format!("FROM {base_name}: {e}; pull it first with `firepit image pull REFERENCE --name {base_name}`"),
        )
    })?;
    let record = Record::read(&base);
    let (base_layers, base_diff_ids, base_config, base_identity) = match &record {
        Some(r) => {
            let (m, c) = install::load(blobs, &r.manifest)?;
            (
                m.layers,
                c.rootfs.diff_ids.clone(),
                c.config.unwrap_or_default(),
                r.manifest.to_string(),
            )
        }
        None => (
            Vec::new(),
            Vec::new(),
            spec::RunConfig::default(),
            format!("recipe {} {}", base.name, base.manifest.created),
        ),
    };
    if base.manifest.uid_base != uid_base {
        return Err(step_error(
            line,
            format!(
                "image {base_name} has uid base {}, the store makes {uid_base}",
                base.manifest.uid_base
            ),
        ));
    }
    // The stack to start from: the base's layers, or its whole tree.
    let layered = record.is_some() && !base.manifest.layers.is_empty();
    let (tree, stack) = match &record {
        Some(r) if layered => {
            let layers = r
                .layers
                .iter()
                .zip(&base_diff_ids)
                .map(|(blob, diff_id)| Layer {
                    blob: blob.clone(),
                    diff_id: diff_id.clone(),
                })
                .collect();
            (r.tree.clone().map(|key| Tree { key, source: None }), layers)
        }
        _ => (
            Some(Tree {
                key: format!(
                    "image {} made {} by {}",
                    base.name, base.manifest.created, base.manifest.builder
                ),
                source: Some(base.rootfs.clone()),
            }),
            Vec::new(),
        ),
    };
    let lowers = stacker.stack(tree.as_ref(), &stack)?;
    let mut state = State {
        key: Vec::new(),
        env: base_config
            .env
            .clone()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect(),
        args: BTreeMap::new(),
        cwd: base_config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into()),
        config: base_config,
        layers: base_layers,
        diff_ids: base_diff_ids,
        stack,
        lowers,
        tree,
    };
    state.next_key(&[b"FROM", base_identity.as_bytes()]);
    Ok(state)
}

/// Runs the steps of one stage on `state`.
fn run_stage(
    ctx: Ctx<'_>,
    state: &mut State,
    steps: &[&Step],
    runner: &mut dyn Runner,
    progress: &mut dyn FnMut(StepEvent),
) -> Result<()> {
    let Ctx {
        store,
        req,
        stacker,
        cache_dir,
        tmp_layer,
        ignore,
        pre_args,
        uid_base,
        stages,
        built,
    } = ctx;
    let blobs = stacker.blobs;
    for step in steps {
        progress(StepEvent::Start {
            line: step.line,
            text: step.text.clone(),
        });
        let vars = state.vars();
        let x = |s: &str| dockerfile::expand(s, &vars);
        match &step.instruction {
            Instruction::From { .. } => unreachable_from(step)?,
            Instruction::Arg(k, d) => {
                let v = req
                    .build_args
                    .get(k)
                    .cloned()
                    .or_else(|| d.as_ref().map(|d| x(d)))
                    .or_else(|| pre_args.get(k).cloned())
                    .unwrap_or_default();
                state.next_key(&[b"ARG", k.as_bytes(), v.as_bytes()]);
                state.args.insert(k.clone(), v);
            }
            Instruction::Env(pairs) => {
                for (k, v) in pairs {
                    let v = x(v);
                    state.next_key(&[b"ENV", k.as_bytes(), v.as_bytes()]);
                    state.set_env(k.clone(), v);
                }
            }
            Instruction::Label(pairs) => {
                let labels = state.config.labels.get_or_insert_with(Default::default);
                for (k, v) in pairs {
                    labels.insert(k.clone(), x(v));
                }
                state.next_key(&[b"LABEL", step.text.as_bytes()]);
            }
            Instruction::User(u) => {
                let u = x(u);
                state.next_key(&[b"USER", u.as_bytes()]);
                state.config.user = Some(u);
            }
            Instruction::Expose(ports) => {
                let map = state
                    .config
                    .exposed_ports
                    .get_or_insert_with(Default::default);
                for p in ports {
                    map.insert(p.clone(), serde_json::json!({}));
                }
                state.next_key(&[b"EXPOSE", step.text.as_bytes()]);
            }
            Instruction::Cmd(argv) => {
                state.config.cmd = Some(argv.clone());
                state.next_key(&[b"CMD", step.text.as_bytes()]);
            }
            Instruction::Entrypoint(argv) => {
                state.config.entrypoint = Some(argv.clone());
                state.config.cmd = None;
                state.next_key(&[b"ENTRYPOINT", step.text.as_bytes()]);
            }
            Instruction::Workdir(dir) => {
                let dir = x(dir);
                let abs = absolute(&state.cwd, &dir);
                state.cwd = abs.clone();
                let key = state.next_key(&[b"WORKDIR", abs.as_bytes()]);
                let mut f = create(tmp_layer)?;
                {
                    let mut b = tar::Builder::new(&mut f);
                    let mut path = String::new();
                    for c in abs.split('/').filter(|c| !c.is_empty()) {
                        path.push_str(c);
                        path.push('/');
                        if !crate::unpack::is_dir_in(&state.lowers, &path)? {
                            let mut h = dir_header();
                            b.append_data(&mut h, &path, &[][..])
                                .ctx("writing", tmp_layer)?;
                        }
                    }
                    b.finish().ctx("writing", tmp_layer)?;
                }
                drop(f);
                layer_step(
                    blobs, cache_dir, &key, tmp_layer, stacker, state, step, progress, true,
                )?;
            }
            Instruction::Copy {
                sources,
                dest,
                from,
            } => {
                let dest = absolute(&state.cwd, &x(dest));
                let mut f = create(tmp_layer)?;
                let lowers = state.lowers.clone();
                let exists = |p: &str| crate::unpack::is_dir_in(&lowers, p).unwrap_or(false);
                match from {
                    None => copy_layer(req.context, ignore, sources, &dest, &exists, &mut f)
                        .map_err(|e| step_error(step.line, e))?,
                    Some(from) => {
                        let source = match stage_ref(stages, from, true) {
                            Some(j) => built[j]
                                .as_ref()
                                .expect("needed stages are built")
                                .lowers
                                .clone(),
                            None => {
                                let image = store.get(from).map_err(|e| {
                                    step_error(step.line, format!("COPY --from={from}: no stage of that name before this one, nor an image of the store ({e})"))
                                })?;
                                if image.manifest.uid_base != uid_base {
                                    return Err(step_error(
                                        step.line,
                                        format!(
                                            "COPY --from={from}: the image has uid base {}, the store makes {uid_base}",
                                            image.manifest.uid_base
                                        ),
                                    ));
                                }
                                image.lowers()
                            }
                        };
                        let sources: Vec<String> = sources.iter().map(|s| x(s)).collect();
                        let into_dir = dest.ends_with('/') || sources.len() > 1;
                        let mut b = tar::Builder::new(&mut f);
                        dest_parents(&mut b, &dest, into_dir, &exists)
                            .map_err(|e| step_error(step.line, e))?;
                        crate::unpack::copy_from_stack(
                            &source,
                            uid_base,
                            &sources,
                            dest.trim_start_matches('/'),
                            into_dir,
                            &mut b,
                        )
                        .map_err(|e| step_error(step.line, e.to_string()))?;
                        b.finish().ctx("writing", tmp_layer)?;
                    }
                }
                drop(f);
                let content = Digest::of_file(tmp_layer)?;
                let key =
                    state.next_key(&[b"COPY", step.text.as_bytes(), content.as_str().as_bytes()]);
                layer_step(
                    blobs, cache_dir, &key, tmp_layer, stacker, state, step, progress, true,
                )?;
            }
            Instruction::Run(argv) => {
                let mut env_parts = Vec::new();
                for (k, v) in state
                    .args
                    .iter()
                    .chain(state.env.iter().map(|(k, v)| (k, v)))
                {
                    env_parts.push(format!("{k}={v}"));
                }
                let cwd = state.cwd.clone();
                let key = state.next_key(&[
                    b"RUN",
                    step.text.as_bytes(),
                    env_parts.join("\0").as_bytes(),
                    cwd.as_bytes(),
                ]);
                if cached(cache_dir, &key, blobs).is_none() {
                    let mut env: Vec<(String, String)> = state.args.clone().into_iter().collect();
                    env.extend(state.env.iter().cloned());
                    let argv = as_user(state.config.user.as_deref(), argv);
                    let mut f = create(tmp_layer)?;
                    runner
                        .run(&state.lowers, uid_base, &argv, &env, &state.cwd, &mut f)
                        .map_err(|e| step_error(step.line, e))?;
                    drop(f);
                    layer_step(
                        blobs, cache_dir, &key, tmp_layer, stacker, state, step, progress, false,
                    )?;
                } else {
                    layer_step(
                        blobs, cache_dir, &key, tmp_layer, stacker, state, step, progress, true,
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// The image of the target stage's `state`: its config and manifest stored, and the image
/// made from them over the stage's stack.
fn finish_build(
    store: &ImageStore,
    req: &BuildRequest<'_>,
    stacker: &Stacker<'_>,
    staged: firepit_image::Staged,
    state: &mut State,
) -> Result<Image> {
    let blobs = stacker.blobs;
    let uid_base = store.options().uid_base;
    // The config and manifest of what was built.
    state.config.env = Some(state.env.iter().map(|(k, v)| format!("{k}={v}")).collect());
    state.config.working_dir = Some(state.cwd.clone());
    let config = spec::ImageConfig {
        architecture: spec::host_platform().0.to_owned(),
        os: "linux".into(),
        config: Some(state.config.clone()),
        rootfs: spec::RootFs {
            kind: "layers".into(),
            diff_ids: state.diff_ids.clone(),
        },
    };
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| Error::bad("image config", e.to_string()))?;
    let config_digest = Digest::of(&config_bytes);
    blobs.put(&config_digest, &config_bytes)?;
    let manifest = spec::Manifest {
        schema_version: 2,
        media_type: Some(spec::OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            digest: config_digest,
            size: config_bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        },
        layers: state.layers.clone(),
    };
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| Error::bad("manifest", e.to_string()))?;
    let manifest_digest = Digest::of(&manifest_bytes);
    blobs.put(&manifest_digest, &manifest_bytes)?;
    install::finish(
        staged,
        install::Made {
            kind: SourceKind::Dockerfile,
            source: &req.dockerfile.display().to_string(),
            manifest_digest: &manifest_digest,
            manifest: &manifest,
            config: &config,
            uid_base,
            tree: state.tree.as_ref().map(|t| t.key.clone()),
            stack: &state.lowers,
        },
    )
}

/// `argv` run as `user` (the image's `USER`): through the guest binary, which every machine
/// has at `/.firepit/guest`, so images without `su` work too.
pub fn as_user(user: Option<&str>, argv: &[String]) -> Vec<String> {
    match user {
        Some(u) if !u.is_empty() && u != "root" && u != "0" && u != "0:0" => {
            let mut v = vec![
                firepit_wire::image_config::GUEST.to_owned(),
                "--run-as".to_owned(),
                u.to_owned(),
                "--".to_owned(),
            ];
            v.extend(argv.iter().cloned());
            v
        }
        _ => argv.to_vec(),
    }
}

fn unreachable_from(step: &Step) -> Result<()> {
    Err(step_error(
        step.line,
        "a FROM inside a stage (a FROM starts the next stage)",
    ))
}

fn step_error(line: usize, reason: impl Into<String>) -> Error {
    Error::BuildStep {
        line,
        reason: reason.into(),
    }
}

fn create(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).ctx("creating", path)
}

fn dir_header() -> tar::Header {
    crate::diff::root_header(tar::EntryType::Directory, 0o755)
}

fn absolute(cwd: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{}/{path}", cwd.trim_end_matches('/'))
    };
    let mut out: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    let mut s = format!("/{}", out.join("/"));
    if path.ends_with('/') && s != "/" {
        s.push('/');
    }
    s
}

/// The layer cached under `key`, if its blob is still there.
fn cached(cache_dir: &Path, key: &str, blobs: &BlobStore) -> Option<Digest> {
    let text = std::fs::read_to_string(cache_dir.join(key)).ok()?;
    let d = Digest::parse(text.trim()).ok()?;
    blobs.size(&d).map(|_| d)
}

/// Takes the layer of a step: from the cache when `use_cache` and it is there, else the tar
/// at `tmp` (stored by its digest and cached under `key`); then unpacks it on the stack.
#[allow(clippy::too_many_arguments)]
fn layer_step(
    blobs: &BlobStore,
    cache_dir: &Path,
    key: &str,
    tmp: &Path,
    stacker: &Stacker<'_>,
    state: &mut State,
    step: &Step,
    progress: &mut dyn FnMut(StepEvent),
    use_cache: bool,
) -> Result<()> {
    let digest = match cached(cache_dir, key, blobs).filter(|_| use_cache) {
        Some(d) => {
            progress(StepEvent::Cached { line: step.line });
            d
        }
        None => {
            let mut f = std::fs::File::open(tmp).ctx("reading", tmp)?;
            let (d, _) = blobs.put_any(&mut f)?;
            let entry = cache_dir.join(key);
            let mut c = create(&entry)?;
            c.write_all(d.as_str().as_bytes()).ctx("writing", &entry)?;
            progress(StepEvent::Made {
                line: step.line,
                layer: d.clone(),
            });
            d
        }
    };
    state.stack.push(Layer {
        blob: digest.clone(),
        diff_id: digest.clone(),
    });
    state.lowers = stacker.stack(state.tree.as_ref(), &state.stack)?;
    state.layers.push(Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        size: blobs.size(&digest).unwrap_or(0),
        digest: digest.clone(),
        platform: None,
        annotations: Default::default(),
    });
    state.diff_ids.push(digest);
    Ok(())
}

/// `.dockerignore`: patterns (`*`, `?`, `**`), `!` to take a path back in; the last match
/// wins.
pub struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    /// Reads `<context>/.dockerignore` (none: nothing ignored).
    pub fn read(context: &Path) -> Result<Ignore> {
        let path = context.join(".dockerignore");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io("reading", &path, e)),
        };
        Ok(Ignore::parse(&text))
    }

    /// Parses the patterns.
    pub fn parse(text: &str) -> Ignore {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (keep, pat) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let parts = pat
                    .trim_start_matches("./")
                    .trim_matches('/')
                    .split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .map(str::to_owned)
                    .collect();
                (keep, parts)
            })
            .collect();
        Ignore { rules }
    }

    /// Whether `rel` (a path in the context, `/`-separated) is left out. A path is left out
    /// when it or a directory above it matches.
    pub fn ignored(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let mut out = false;
        for (keep, pat) in &self.rules {
            let hit = (1..=parts.len()).any(|n| glob(pat, &parts[..n]));
            if hit {
                out = !keep;
            }
        }
        out
    }
}

fn glob(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => (0..=path.len()).any(|i| glob(rest, &path[i..])),
        Some((p, rest)) => match path.split_first() {
            Some((c, tail)) => segment(p.as_bytes(), c.as_bytes()) && glob(rest, tail),
            None => false,
        },
    }
}

fn segment(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => segment(&p[1..], s) || (!s.is_empty() && segment(p, &s[1..])),
        (Some(b'?'), Some(_)) => segment(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => segment(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Writes the layer of a `COPY sources dest`: files of the context (not ignored, no path
/// leaving it, links stored as links), owned by root, times 0; the destination's parents
/// that the image lacks (`exists` says) made root's, 0755.
fn copy_layer(
    context: &Path,
    ignore: &Ignore,
    sources: &[String],
    dest: &str,
    exists: &dyn Fn(&str) -> bool,
    out: &mut std::fs::File,
) -> std::result::Result<(), String> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let into_dir = dest.ends_with('/') || sources.len() > 1;
    dest_parents(&mut b, dest, into_dir, exists)?;
    let dest = dest.trim_end_matches('/');
    for source in sources {
        // Cleaned against the context's root: no source leaves it.
        let rel = absolute("/", source).trim_start_matches('/').to_owned();
        let src: PathBuf = if rel.is_empty() {
            context.to_owned()
        } else {
            context.join(&rel)
        };
        let meta = std::fs::symlink_metadata(&src)
            .map_err(|e| format!("COPY source {source}: {e} in the build context"))?;
        if meta.is_dir() {
            let target = dest.trim_start_matches('/').to_owned();
            add_tree(&mut b, &src, &rel, &target, ignore)?;
        } else {
            if !rel.is_empty() && ignore.ignored(&rel) {
                return Err(format!("COPY source {source} is excluded by .dockerignore"));
            }
            let name = src.file_name().and_then(|n| n.to_str()).unwrap_or("file");
            let target = if into_dir {
                format!("{}/{name}", dest.trim_start_matches('/'))
            } else {
                dest.trim_start_matches('/').to_owned()
            };
            add_entry(&mut b, &src, &meta, &target)?;
        }
    }
    b.finish().map_err(|e| e.to_string())
}

/// The directory entries of `dest`'s parents (and `dest` itself when `into_dir`) that the
/// image lacks (`exists` says): root's, 0755. One the image has keeps its owner and mode
/// (and a link to one is followed when the layer is unpacked).
fn dest_parents(
    b: &mut tar::Builder<&mut std::fs::File>,
    dest: &str,
    into_dir: bool,
    exists: &dyn Fn(&str) -> bool,
) -> std::result::Result<(), String> {
    let parents: Vec<&str> = dest.split('/').filter(|c| !c.is_empty()).collect();
    let upto = if into_dir {
        parents.len()
    } else {
        parents.len().saturating_sub(1)
    };
    let mut path = String::new();
    for c in &parents[..upto] {
        path.push_str(c);
        path.push('/');
        if exists(&path) {
            continue;
        }
        let mut h = dir_header();
        b.append_data(&mut h, &path, &[][..])
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn add_tree(
    b: &mut tar::Builder<&mut std::fs::File>,
    dir: &Path,
    rel: &str,
    target: &str,
    ignore: &Ignore,
) -> std::result::Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if ignore.ignored(&child_rel) {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
        let child_target = if target.is_empty() {
            name.clone()
        } else {
            format!("{target}/{name}")
        };
        add_entry(b, &path, &meta, &child_target)?;
        if meta.is_dir() {
            add_tree(b, &path, &child_rel, &child_target, ignore)?;
        }
    }
    Ok(())
}

fn add_entry(
    b: &mut tar::Builder<&mut std::fs::File>,
    path: &Path,
    meta: &std::fs::Metadata,
    target: &str,
) -> std::result::Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mut h = tar::Header::new_gnu();
    h.set_mode(meta.permissions().mode() & 0o7777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    let err = |e: std::io::Error| format!("adding {}: {e}", path.display());
    if meta.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        b.append_data(&mut h, format!("{target}/"), &[][..])
            .map_err(err)
    } else if meta.file_type().is_symlink() {
        h.set_entry_type(tar::EntryType::Symlink);
        let link = std::fs::read_link(path).map_err(err)?;
        b.append_link(&mut h, target, link).map_err(err)
    } else if meta.is_file() {
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(meta.len());
        let f = std::fs::File::open(path).map_err(err)?;
        b.append_data(&mut h, target, f).map_err(err)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_patterns() {
        let ig = Ignore::parse("# c\nnode_modules\n*.log\n**/secret*\nbuild/\n!build/keep\n");
        assert!(ig.ignored("node_modules"));
        assert!(ig.ignored("node_modules/a/b"));
        assert!(ig.ignored("x.log"));
        assert!(!ig.ignored("dir/x.log"));
        assert!(ig.ignored("a/b/secret.txt"));
        assert!(ig.ignored("secret"));
        assert!(ig.ignored("build/out"));
        assert!(!ig.ignored("build/keep"));
        assert!(!ig.ignored("src/main.rs"));
    }

    #[test]
    fn paths_join_like_docker() {
        assert_eq!(absolute("/srv", "app"), "/srv/app");
        assert_eq!(absolute("/srv", "/etc/"), "/etc/");
        assert_eq!(absolute("/", "../../x"), "/x");
        assert_eq!(absolute("/a/b", ".."), "/a");
    }
}
