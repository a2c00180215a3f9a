//! The command line, as clap derive types. Nothing here reaches the core:
//! [`crate::settings`] resolves these into settings first.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// firepit: isolated machines that a person and an AI agent share.
#[derive(Debug, Parser)]
#[command(name = "firepit", version, about, propagate_version = true)]
pub struct Cli {
    /// Data directory of the daemon (store, token, machines, images).
    #[arg(
        long,
        global = true,
        env = "FIREPIT_DATA_DIR",
        default_value = "/var/lib/firepit"
    )]
    pub data_dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (builds the default image first if it is missing).
    Up(UpArgs),
    /// Make a new session; prints its id.
    New(NewArgs),
    /// List sessions.
    Ls,
    /// Run a command in a session, streaming its output; exits with its code.
    Exec(ExecArgs),
    /// Attach this terminal to a session's shared shell (the `main` PTY).
    Shell(ShellArgs),
    /// Copy a file into or out of a session: `firepit cp ./a ID:/root/a` or `firepit cp ID:/etc/os-release .`.
    Cp(CpArgs),
    /// Rename a session, or give it new labels: `firepit rename ID "web app" --label team=web`.
    Rename(RenameArgs),
    /// Stop a session: its processes end, its files are kept.
    Stop(IdArg),
    /// Start a stopped session again.
    Start(StartArgs),
    /// Destroy a session and everything in it.
    Rm(IdArg),
    /// Make a session, run a command in it, destroy it.
    Run(RunArgs),
    /// List the TCP ports listening in a session, with their preview URLs.
    Ports(IdArg),
    /// List a session's services, or print one service's log.
    Logs(LogsArgs),
    /// Start, stop, restart, list and forget a session's services; they start
    /// again with the session. `firepit service start ID run -- npm run dev`
    /// sets the project's run command (the UI's Run button).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Print a session's event log: seq, time, type, summary.
    Events(EventsArgs),
    /// Talk to a session's agent: `firepit agent ID "build a todo app"`.
    Agent(AgentArgs),
    /// Build, list and remove images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Make a signed, expiring link to a session's preview port; prints the URL.
    Share(ShareArgs),
    /// Revoke a share link.
    Unshare(UnshareArgs),
    /// Serve MCP over stdio for a local MCP client (Claude Code, Claude
    /// Desktop, Cursor …), bridged to the daemon's `/mcp`; the daemon is
    /// found as for every command (`--data-dir`, or FIREPIT_URL and FIREPIT_TOKEN).
    Mcp,
    /// Turn a repository's open issues into pull requests (a job in the
    /// daemon; this follows its progress): `firepit triage owner/name --label agent`.
    Triage(TriageArgs),
    /// Keep a session's files as they are now: `firepit checkpoint ID [--name NAME]`
    /// prints the checkpoint's id; `firepit checkpoint rm ID CHECKPOINT` removes one.
    Checkpoint(CheckpointArgs),
    /// List a session's checkpoints: id, time, size, what made it, parent, name.
    Checkpoints(IdArg),
    /// Return a session's files to one of its checkpoints (its processes
    /// start again; what was written since is gone).
    Restore(RestoreArgs),
    /// Make a new session whose files start as this one's (now, or at a
    /// checkpoint); prints its id.
    Fork(ForkArgs),
    /// Show or change what a session does with the problems it finds:
    /// `firepit closed-loop ID --preview-reports off`.
    ClosedLoop(ClosedLoopArgs),
}

/// On or off, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// `firepit closed-loop`
#[derive(Debug, Args)]
pub struct ClosedLoopArgs {
    /// The session.
    pub id: String,
    /// Whether a new problem wakes the idle agent.
    #[arg(long, value_enum)]
    pub wake_agent: Option<Switch>,
    /// Whether the preview puts its error-reporting script into the app's
    /// HTML pages (off: pages are byte for byte what the app sent).
    #[arg(long, value_enum)]
    pub preview_reports: Option<Switch>,
}

/// `firepit checkpoint`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CheckpointArgs {
    /// Session id (see `firepit ls`).
    #[arg(required = true)]
    pub id: Option<String>,
    /// A name for people.
    #[arg(long)]
    pub name: Option<String>,
    /// `rm ID CHECKPOINT`
    #[command(subcommand)]
    pub command: Option<CheckpointCommand>,
}

/// `firepit checkpoint rm`
#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Remove a checkpoint.
    Rm {
        /// Session id.
        id: String,
        /// Checkpoint id (see `firepit checkpoints ID`).
        checkpoint: String,
    },
}

/// `firepit restore`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Session id.
    pub id: String,
    /// Checkpoint id (see `firepit checkpoints ID`).
    pub checkpoint: String,
}

/// `firepit fork`
#[derive(Debug, Args)]
pub struct ForkArgs {
    /// Session id.
    pub id: String,
    /// Start from this checkpoint instead of the session's files now.
    #[arg(long)]
    pub from: Option<String>,
}

/// `firepit up`
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address to listen on.
    #[arg(long, env = "FIREPIT_LISTEN", default_value = "127.0.0.1:7777")]
    pub listen: SocketAddr,
    /// Domain of preview URLs.
    #[arg(long, env = "FIREPIT_DOMAIN", default_value = "localhost")]
    pub domain: String,
    /// The origin browsers open the UI at, when a front proxy serves it
    /// (`https://firepit.example.com`): the only origin allowed to use the
    /// API from a browser and to frame previews; with `https` the login
    /// cookie is `__Host-` and `Secure`, and previews are `https` too.
    #[arg(long, env = "FIREPIT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Image used when a session names none.
    #[arg(long, env = "FIREPIT_DEFAULT_IMAGE", default_value = "default")]
    pub default_image: String,
    /// Directory of images, if not `<data-dir>/images`.
    #[arg(long, env = "FIREPIT_IMAGES_DIR")]
    pub images_dir: Option<PathBuf>,
    /// Name of this daemon when several run on one host (1-6 of a-z0-9): its
    /// machines get their own cgroups, firewall table, bridge and subnet.
    #[arg(long, env = "FIREPIT_INSTANCE")]
    pub instance: Option<String>,
    /// Disk limit of a session that gives none (`firepit new --disk`), e.g. `10G`.
    #[arg(long, env = "FIREPIT_DEFAULT_DISK", default_value = "10G")]
    pub default_disk: String,
    /// Size of the disk pool that machines' files live in, fixed when it is
    /// first made: `auto` (half the space free on the data dir's file
    /// system), a size such as `200G`, or `off` (no disk limits: for hosts
    /// whose kernel has no btrfs).
    #[arg(long, env = "FIREPIT_DISK_POOL_SIZE", default_value = "auto")]
    pub disk_pool_size: String,
    /// Open an IPv4 range to machines (repeatable; comma-separated in the
    /// environment), e.g. `--allow-net 192.168.5.0/24`. By default machines
    /// reach no private (10/8, 172.16/12, 192.168/16), shared (100.64/10),
    /// link-local or cloud-fabric address.
    #[arg(
        long = "allow-net",
        value_name = "CIDR",
        env = "FIREPIT_ALLOW_NET",
        value_delimiter = ','
    )]
    pub allow_net: Vec<firepit_machine::namespaces::Ipv4Net>,
    /// A PEM file of CA certificates every machine (and image build) trusts
    /// besides its image's (repeatable; comma-separated in the environment).
    /// The host's own additions (`/usr/local/share/ca-certificates`,
    /// `/etc/pki/ca-trust/source/anchors`) are added too, unless `--no-host-ca`.
    #[arg(
        long = "ca-file",
        value_name = "PEM",
        env = "FIREPIT_CA_FILE",
        value_delimiter = ','
    )]
    pub ca_files: Vec<PathBuf>,
    /// Leave out the CAs this host added to its own store.
    #[arg(long, env = "FIREPIT_NO_HOST_CA")]
    pub no_host_ca: bool,
    /// The HTTP proxy machines and image builds reach the web through,
    /// `http://[user:password@]host:port`; machines reach it through the
    /// daemon and never see its credentials. By default the daemon's
    /// `HTTPS_PROXY`, `HTTP_PROXY` or `ALL_PROXY`; `off`: machines get none.
    #[arg(long, value_name = "URL", env = "FIREPIT_PROXY")]
    pub proxy: Option<String>,
    /// The machines' subnet, e.g. `--subnet 10.90.0.0/20` (its first address
    /// is the gateway; /8 to /30): how many machines with network the daemon
    /// holds. Default 10.88.0.0/16 (an `--instance` gets a /24 of its own).
    #[arg(long, value_name = "CIDR", env = "FIREPIT_SUBNET")]
    pub subnet: Option<firepit_machine::namespaces::Ipv4Net>,
}

/// Limits and options of a new machine.
#[derive(Debug, Args)]
pub struct MachineArgs {
    /// Image to make the machine from (the daemon's default if absent).
    #[arg(long)]
    pub image: Option<String>,
    /// Memory limit, e.g. `512M`, `2G`.
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit, e.g. `0.5`, `2`.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Limit on processes and threads.
    #[arg(long)]
    pub pids: Option<u64>,
    /// Disk limit: the most the machine's own files may take, e.g. `10G`
    /// (the daemon's default if absent). Writing past it fails inside.
    #[arg(long)]
    pub disk: Option<String>,
    /// Network: `nat` (egress through the host) or `none` (loopback only).
    #[arg(long, value_enum, default_value_t = Network::Nat)]
    pub network: Network,
}

/// Network modes on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Network {
    /// Egress through NAT on the host.
    Nat,
    /// Loopback only.
    None,
}

/// `firepit new`
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Machine options.
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Clone this forge repository (`owner/name`) into /workspace; the
    /// machine reaches it through the daemon, which keeps the token.
    #[arg(long)]
    pub repo: Option<String>,
    /// The branch to check out (with --repo).
    #[arg(long, requires = "repo")]
    pub branch: Option<String>,
    /// Run PostgreSQL as the session's service `postgres` (images with
    /// PostgreSQL, such as `default`); its data lives in the session's files.
    #[arg(long)]
    pub postgres: bool,
    /// Stop the session after this long (`90s`, `30m`, `1h`, `2d`, or
    /// seconds); its files are kept and `start` runs it again.
    #[arg(long)]
    pub timeout: Option<String>,
    /// Start the image's entrypoint (an OCI image's Entrypoint and Cmd) as the service
    /// `entrypoint`.
    #[arg(long)]
    pub entrypoint: bool,
    /// A name for the session (shown by `ls` and the web UI).
    #[arg(long)]
    pub name: Option<String>,
    /// A label `key=value` to find the session by (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
}

/// `firepit rename`
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// Session id (see `firepit ls`).
    pub id: String,
    /// The new name; `""` takes the name away. Left out: the name stays.
    pub name: Option<String>,
    /// Labels `key=value` that replace all the session's labels (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Take every label away.
    #[arg(long, conflicts_with = "labels")]
    pub no_labels: bool,
}

/// `firepit start`
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Session id (see `firepit ls`).
    pub id: String,
    /// Start PostgreSQL again as the service `postgres`, on the data the
    /// session kept (see `firepit new --postgres`).
    #[arg(long)]
    pub postgres: bool,
}

/// A session id.
#[derive(Debug, Args)]
pub struct IdArg {
    /// Session id (see `firepit ls`).
    pub id: String,
}

/// `firepit exec`
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Session id.
    pub id: String,
    /// Working directory inside the machine.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Environment variable for the command, `KEY=VALUE` (repeatable).
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// Kill the command after this many seconds.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Send this terminal's standard input (read to its end) to the command.
    #[arg(long, short = 'i')]
    pub stdin: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `firepit agent`
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Session id.
    pub id: String,
    /// What to tell the agent; its run streams here until it ends.
    pub message: Option<String>,
    /// Watch the agent (and keep watching) instead of waiting for one run.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Stop the agent's run.
    #[arg(long, conflicts_with_all = ["message", "follow"])]
    pub stop: bool,
}

/// `firepit shell`
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Session id.
    pub id: String,
    /// PTY to attach to.
    #[arg(long, default_value = "main")]
    pub pty: String,
}

/// `firepit cp`
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Source: a local path or `ID:/path`.
    pub from: String,
    /// Destination: a local path or `ID:/path`.
    pub to: String,
}

/// `firepit share`
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// Session id.
    pub id: String,
    /// The port inside the machine.
    pub port: u16,
    /// How long the link works: `90s`, `30m`, `1h`, `7d` (at most 30 days).
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Where the link lands in the app (`/docs?x=1`); it opens the whole port.
    #[arg(long)]
    pub path: Option<String>,
}

/// `firepit unshare`
#[derive(Debug, Args)]
pub struct UnshareArgs {
    /// Session id.
    pub id: String,
    /// The share's id (printed by `firepit share`).
    pub share: String,
}

/// `firepit logs`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Session id.
    pub id: String,
    /// Service whose log to print; without it, the services are listed.
    pub service: Option<String>,
    /// Keep printing new output.
    #[arg(long, short = 'f', requires = "service")]
    pub follow: bool,
}

/// `firepit service`
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// List the session's services, running and kept.
    Ls {
        /// Session id.
        id: String,
    },
    /// Start a service: with a command, a new spec (kept with the session);
    /// without one, the kept service of that name.
    Start(ServiceStartArgs),
    /// Stop a service; its spec is kept (`start ID NAME` starts it again).
    Stop(ServiceNameArgs),
    /// Stop a service if it runs and start it again.
    Restart(ServiceNameArgs),
    /// Stop a service if it runs and forget its spec.
    Rm(ServiceNameArgs),
    /// Print a service's log.
    Logs(ServiceLogsArgs),
}

/// A session and one of its services.
#[derive(Debug, Args)]
pub struct ServiceNameArgs {
    /// Session id.
    pub id: String,
    /// Service name.
    pub name: String,
}

/// `firepit service start`
#[derive(Debug, Args)]
pub struct ServiceStartArgs {
    /// Session id.
    pub id: String,
    /// Service name (`run` is the project's run command).
    pub name: String,
    /// When the guest starts it again after it exits.
    #[arg(long, value_enum, default_value_t = Restart::Never)]
    pub restart: Restart,
    /// Working directory in the machine.
    #[arg(long)]
    pub cwd: Option<String>,
    /// `KEY=VALUE` added to its environment (repeatable).
    #[arg(long = "env", short = 'e', value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// The command line, run by `/bin/sh -c` (after `--`); none: the kept spec.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `firepit service start --restart`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Restart {
    /// Never.
    Never,
    /// When it exits other than with code 0.
    OnFailure,
    /// Whenever it exits (with backoff).
    Always,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// `firepit service logs`
#[derive(Debug, Args)]
pub struct ServiceLogsArgs {
    /// Session id.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Keep printing new output.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Empty the log instead of printing it.
    #[arg(long, conflicts_with = "follow")]
    pub clear: bool,
}

/// `firepit events`
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Session id.
    pub id: String,
    /// Only events after this seq.
    #[arg(long, default_value_t = 0)]
    pub since: u64,
    /// Keep printing new events as they happen.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// `firepit run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Machine options.
    #[command(flatten)]
    pub machine: MachineArgs,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `firepit image …`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image from Debian packages (`default`, `minimal`, `git` or `browser`),
    /// or from a Dockerfile with `-f`.
    Build {
        /// Which recipe.
        #[arg(default_value = "default")]
        name: String,
        /// The Debian suite: a codename (`trixie`) or `stable` (resolved to today's
        /// codename). Default: the recipe's (`default`: the newest stable; the test
        /// images: the host's).
        #[arg(long)]
        suite: Option<String>,
        /// Build under another image name (the recipe's name if absent), so that
        /// sessions keep the image they use while the new one is built.
        #[arg(long = "as", value_name = "IMAGE")]
        as_name: Option<String>,
        /// Build from this Dockerfile (each RUN in a firepit machine).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// The build context of a Dockerfile (default: its directory).
        #[arg(requires = "file")]
        context: Option<PathBuf>,
        /// `NAME=value` for the Dockerfile's ARGs.
        #[arg(long = "build-arg", requires = "file")]
        build_arg: Vec<String>,
        /// The Dockerfile's stage to make the image of (its `AS` name or index; default
        /// the last); only the stages it needs are built.
        #[arg(long, requires = "file")]
        target: Option<String>,
        /// Directory of images, if not `<data-dir>/images`.
        #[arg(long, env = "FIREPIT_IMAGES_DIR")]
        images_dir: Option<PathBuf>,
    },
    /// List built images.
    Ls {
        /// Directory of images, if not `<data-dir>/images`.
        #[arg(long, env = "FIREPIT_IMAGES_DIR")]
        images_dir: Option<PathBuf>,
    },
    /// Remove an image, and the layers no other image uses.
    Rm {
        /// Which image.
        name: String,
        /// Directory of images, if not `<data-dir>/images`.
        #[arg(long, env = "FIREPIT_IMAGES_DIR")]
        images_dir: Option<PathBuf>,
    },
    /// Pull an image from an OCI registry: `firepit image pull HOST/REPO:TAG`.
    Pull(crate::cli_oci::PullArgs),
    /// Import an image from a `docker save` or OCI archive tarball.
    Import(crate::cli_oci::ImportArgs),
    /// Make an image of a session's files (through the daemon), for
    /// `firepit new --image NAME`.
    Save {
        /// Session id.
        id: String,
        /// The new image's name.
        name: String,
        /// Make it of this checkpoint instead of the session's files now.
        #[arg(long)]
        from: Option<String>,
    },
}

/// `firepit triage`
#[derive(Debug, Args)]
pub struct TriageArgs {
    /// The repository, `owner/name`.
    pub repo: String,
    /// Only issues with this label.
    #[arg(long)]
    pub label: Option<String>,
    /// At most this many issues.
    #[arg(long, default_value_t = 10)]
    pub max: u32,
    /// Issues worked on at once.
    #[arg(long, default_value_t = 2)]
    pub parallel: u32,
    /// Image of the sessions (the daemon's default if absent).
    #[arg(long)]
    pub image: Option<String>,
    /// Start the job and print its id without following it.
    #[arg(long)]
    pub detach: bool,
    /// Follow a job that runs already (its id) instead of starting one.
    #[arg(long, conflicts_with_all = ["label", "image", "detach"])]
    pub follow: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_net_takes_ranges_and_refuses_the_rest() {
        let cli = Cli::try_parse_from([
            "firepit",
            "up",
            "--allow-net",
            "10.1.0.0/16",
            "--allow-net",
            "192.168.5.7",
        ])
        .unwrap();
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        let ranges: Vec<String> = up.allow_net.iter().map(|n| n.to_string()).collect();
        assert_eq!(ranges, ["10.1.0.0/16", "192.168.5.7/32"]);
        for bad in ["10.1.2.3/8", "fc00::/7", "lan"] {
            let e = Cli::try_parse_from(["firepit", "up", "--allow-net", bad]).unwrap_err();
            assert!(
                e.to_string().contains("invalid network range"),
                "{bad}: {e}"
            );
        }
    }
}
