//! What is in an image, and the texts that say so: the versions of its key packages (read
//! from the tree's dpkg status after the build and kept in the manifest), the tools a person
//! and an agent find there ([`tools`], [`describe`]: the motd and the agent's prompt say the
//! same), and the helpers a build adds for what it installed: `firepit-postgres` (PostgreSQL
//! on demand, with a role and a database an app can use), Mix's rebar3 pointed at Debian's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Where the helper that runs PostgreSQL lives inside an image.
pub const POSTGRES_HELPER: &str = "/usr/local/bin/firepit-postgres";

/// The command a session service runs to keep PostgreSQL up (in the foreground, so the
/// service's log is the server's).
pub const POSTGRES_SERVICE: &[&str] = &[POSTGRES_HELPER, "run"];

/// The URL an app uses for the database that `firepit-postgres` sets up.
pub const POSTGRES_URL: &str = "postgres://postgres:postgres@localhost:5432/app";

/// Packages whose versions the manifest keeps besides the recipe's own: the ones behind
/// metapackages (`erlang-base` for OTP, `gcc` for `build-essential`, `postgresql-<N>`).
const UNDERLYING: &[&str] = &["erlang-base", "gcc"];

/// The tools a person and an agent look for, by the package that brings them.
const TOOLS: &[(&str, &str)] = &[
    ("nodejs", "Node.js (node)"),
    ("npm", "npm"),
    ("elixir", "Elixir (elixir, mix, iex)"),
    ("erlang-base", "Erlang/OTP (erl)"),
    ("rebar3", "rebar3"),
    ("python3", "Python (python3)"),
    ("python3-pip", "pip (pip3; python3 -m venv works)"),
    ("golang-go", "Go (go)"),
    ("rustc", "Rust (rustc)"),
    ("cargo", "cargo"),
    ("gcc", "gcc and make (build-essential)"),
    ("git", "git"),
    ("gh", "GitHub CLI (gh)"),
    ("chromium", "Chromium (chromium)"),
    ("postgresql", "PostgreSQL (firepit-postgres, psql)"),
    ("sqlite3", "SQLite (sqlite3)"),
    ("redis-server", "Redis (redis-server, redis-cli)"),
    ("ripgrep", "ripgrep (rg)"),
    ("jq", "jq"),
    ("vim-tiny", "vim (vi)"),
    ("nano", "nano"),
    ("curl", "curl"),
];

/// The installed packages of a tree and their versions, from `var/lib/dpkg/status`.
pub fn installed(rootfs: &Path) -> Result<BTreeMap<String, String>> {
    let path = rootfs.join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&path).ctx("reading", &path)?;
    Ok(parse_status(&text))
}

/// Parse a dpkg status file: the packages whose status is `install ok installed`.
pub fn parse_status(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if let (Some(p), Some(v), Some("install ok installed")) =
            (field("Package"), field("Version"), field("Status"))
        {
            out.insert(p.to_owned(), v.to_owned());
        }
    }
    out
}

/// The versions a manifest keeps: the recipe's packages that are installed, the packages
/// behind them ([`UNDERLYING`]) and PostgreSQL's versioned server package.
pub fn key_versions(
    installed: &BTreeMap<String, String>,
    packages: &[String],
) -> BTreeMap<String, String> {
    let server = |p: &&String| {
        p.strip_prefix("postgresql-")
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
    };
    installed
        .iter()
        .filter(|(p, _)| packages.contains(p) || UNDERLYING.contains(&p.as_str()) || server(p))
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect()
}

/// The upstream part of a Debian version: no epoch, no Debian revision, no repack suffix
/// (`1:27.3.4.1+dfsg-1` → `27.3.4.1`, `2:1.24~2` → `1.24`, `1.18.3.dfsg-1` → `1.18.3`).
pub fn upstream(version: &str) -> &str {
    let v = version.split_once(':').map_or(version, |(_, v)| v);
    let v = v.split(['-', '+', '~']).next().unwrap_or(v);
    v.strip_suffix(".dfsg").unwrap_or(v)
}

/// The version of PostgreSQL's server in `versions` (`17`), if it is there.
pub fn postgres_major(versions: &BTreeMap<String, String>) -> Option<&str> {
    versions.keys().find_map(|p| {
        p.strip_prefix("postgresql-")
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The tools of an image with their upstream versions, in a fixed order: `(what, version)`.
pub fn tools(versions: &BTreeMap<String, String>) -> Vec<(&'static str, String)> {
    TOOLS
        .iter()
        .filter_map(|&(package, what)| {
            let version = match package {
                // The metapackage's version is Debian's; the server's is the one people know.
                "postgresql" => postgres_major(versions)
                    .and_then(|m| versions.get(&format!("postgresql-{m}")))
                    .or_else(|| versions.get(package))?,
                _ => versions.get(package)?,
            };
            Some((what, upstream(version).to_owned()))
        })
        .collect()
}

/// What an image offers, as Markdown-ish lines for a person (the motd) and the agent (its
/// prompt): the tools with versions, then how to use the servers it has.
pub fn describe(suite: &str, versions: &BTreeMap<String, String>) -> String {
    let mut out = format!("Debian {suite}. Installed:\n");
    for (what, version) in tools(versions) {
        let _ = writeln!(out, "- {what} {version}");
    }
    if postgres_major(versions).is_some() {
        let _ = write!(
            out,
            "\nPostgreSQL is installed but not running: `firepit-postgres start` starts it \
             (idempotent; `firepit-postgres run` keeps it in the foreground, for a service; \
             sessions made with `firepit new --postgres` have it running as the service \
             `postgres`). Then `psql` connects as root, and apps use {POSTGRES_URL} (role \
             `postgres`, password `postgres`, a superuser; database `app`; Phoenix's default \
             dev config works as it is). Its data lives in /var/lib/postgresql, in the \
             session's own files: it survives stop and start.\n"
        );
    }
    if versions.contains_key("redis-server") {
        out.push_str(
            "Redis is installed but not running: `redis-server --daemonize yes` (or as a \
             service, `redis-server`), then `redis-cli ping`.\n",
        );
    }
    if versions.contains_key("sqlite3") {
        out.push_str("SQLite needs no server: `sqlite3 FILE`.\n");
    }
    if versions.contains_key("elixir") {
        out.push_str(
            "Elixir: mix uses Debian's rebar3 (set up); Hex installs itself on the first \
             `mix deps.get` (it needs the network; `mix local.hex --force` does it ahead), \
             and `mix archive.install hex phx_new --force` brings the Phoenix installer.\n",
        );
    }
    out
}

/// The helper script that runs PostgreSQL in a machine.
const POSTGRES_SCRIPT: &str = r#"#!/bin/sh
# Written by firepit: PostgreSQL on demand in this machine.
#   firepit-postgres start    start the server in the background and wait until it answers
#   firepit-postgres run      run it in the foreground (what a firepit service runs)
#   firepit-postgres stop | status (0 once it answers and is set up)
# The first start sets up the role `postgres` (password `postgres`) and `root` (both
# superusers) and the databases `app` and `root`; local connections are trusted.
# Apps use postgres://postgres:postgres@localhost:5432/app.
set -eu
major=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
bin=/usr/lib/postgresql/$major/bin
data=/var/lib/postgresql/$major/main
conf=/etc/postgresql/$major/main/postgresql.conf
log=/var/log/postgresql/firepit-postgres.log
marker=/var/lib/postgresql/.firepit-setup

as_postgres() { runuser -u postgres -- "$@"; }

prepare() {
    install -d -o postgres -g postgres -m 2775 /run/postgresql
    install -d -o postgres -g postgres -m 0755 /var/log/postgresql
    # A machine that stopped left its server's lock files; after a start another process
    # may have that pid, which would keep the server from starting.
    pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != postgres ]; then
        rm -f "$data/postmaster.pid" /run/postgresql/.s.PGSQL.5432 /run/postgresql/.s.PGSQL.5432.lock
    fi
}

# Whether the server accepts connections, from its pid file as pg_ctl reads it (asking it
# with a connection would log a FATAL line for each try while it starts).
answers() {
    pid=$(sed -n 1p "$data/postmaster.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ] || return 1
    sed -n 8p "$data/postmaster.pid" | grep -q '^ready'
}

wait_ready() {
    i=0
    until answers; do
        i=$((i + 1))
        if [ "$i" -gt 300 ]; then
            echo "firepit-postgres: the server did not answer within 30 s; see $log" >&2
            exit 1
        fi
        sleep 0.1
    done
}

setup() {
    [ -e "$marker" ] && return 0
    as_postgres "$bin/psql" -h /run/postgresql -v ON_ERROR_STOP=1 -q -d postgres <<'SQL' || return 1
ALTER ROLE postgres PASSWORD 'postgres';
SELECT 'CREATE ROLE root SUPERUSER LOGIN'
    WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'root') \gexec
SELECT 'CREATE DATABASE app'
    WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'app') \gexec
SELECT 'CREATE DATABASE root OWNER root'
    WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'root') \gexec
SQL
    touch "$marker"
}

case "${1:-start}" in
start)
    prepare
    if ! answers; then
        as_postgres "$bin/pg_ctl" -D "$data" -o "-c config_file=$conf" -l "$log" -s start -w -t 60
    fi
    wait_ready
    setup
    echo "PostgreSQL $major is up: psql, or $(printf %s 'postgres://postgres:postgres@localhost:5432/app')"
    ;;
run)
    prepare
    if answers; then
        # A server `start` made: the service takes over.
        as_postgres "$bin/pg_ctl" -D "$data" -s stop -m fast -w
    fi
    if [ ! -e "$marker" ]; then
        # The first run sets up the roles and databases once the server answers.
        (wait_ready && setup) &
    fi
    exec runuser -u postgres -- "$bin/postgres" -D "$data" -c "config_file=$conf"
    ;;
stop)
    as_postgres "$bin/pg_ctl" -D "$data" -s stop -m fast -w
    ;;
status)
    # Ready: it answers and its roles and databases are there.
    if answers && [ -e "$marker" ]; then
        echo "PostgreSQL $major answers"
    else
        echo "PostgreSQL $major is not running (or not set up yet)"
        exit 3
    fi
    ;;
*)
    echo "usage: firepit-postgres [start|run|stop|status]" >&2
    exit 2
    ;;
esac
"#;

/// PostgreSQL's settings for a machine: loopback only, no TLS (Debian's snake-oil key would
/// be the same in every machine made from the image).
const POSTGRES_CONF: &str = "# Written by firepit.\nlisten_addresses = 'localhost'\nssl = off\n";

/// Local connections are trusted: the machine is the boundary, and apps' stock dev configs
/// (a password or none) all work.
const POSTGRES_HBA: &str = "# Written by firepit: the machine is the boundary.\n\
    local   all all                trust\n\
    host    all all 127.0.0.1/32   trust\n\
    host    all all ::1/128        trust\n";

/// Add what a tree needs for the packages it has, as the host's root before the shift: the
/// motd (and a login script that shows it), PostgreSQL's helper and settings, Mix's rebar3.
pub fn add_helpers(rootfs: &Path, suite: &str, versions: &BTreeMap<String, String>) -> Result<()> {
    let write = |rel: &str, text: &str, mode: u32| -> Result<()> {
        let p = rootfs.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).ctx("creating", parent)?;
        }
        std::fs::write(&p, text).ctx("writing", &p)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).ctx("chmod", &p)
    };
    let tools = tools(versions);
    if tools.len() > 3 {
        write(
            "etc/motd",
            &format!("firepit machine: {}\n", describe(suite, versions)),
            0o644,
        )?;
        write(
            "etc/profile.d/firepit-motd.sh",
            "# Written by firepit: what this machine has, once per interactive login shell.\n\
             case $- in *i*) [ -r /etc/motd ] && cat /etc/motd ;; esac\n",
            0o644,
        )?;
    }
    if versions.contains_key("cargo") || versions.contains_key("golang-go") {
        write(
            "etc/profile.d/firepit-paths.sh",
            "# Written by firepit: what `cargo install` and `go install` install is on PATH.\n\
             PATH=\"$PATH:$HOME/.cargo/bin:$HOME/go/bin\"\n",
            0o644,
        )?;
    }
    if let Some(major) = postgres_major(versions) {
        let etc = format!("etc/postgresql/{major}/main");
        if rootfs.join(&etc).is_dir() {
            write(&format!("{etc}/conf.d/firepit.conf"), POSTGRES_CONF, 0o644)?;
            let hba = rootfs.join(&etc).join("pg_hba.conf");
            let meta = std::fs::metadata(&hba).ctx("reading", &hba)?;
            std::fs::write(&hba, POSTGRES_HBA).ctx("writing", &hba)?;
            std::fs::set_permissions(&hba, meta.permissions()).ctx("chmod", &hba)?;
        }
        write(
            POSTGRES_HELPER.trim_start_matches('/'),
            POSTGRES_SCRIPT,
            0o755,
        )?;
    }
    if let (Some(elixir), true) = (versions.get("elixir"), versions.contains_key("rebar3")) {
        // Mix looks for rebar3 in ~/.mix/elixir/<major>-<minor>/ before it downloads one.
        let mut parts = upstream(elixir).split('.');
        if let (Some(major), Some(minor)) = (parts.next(), parts.next()) {
            let dir = rootfs.join(format!("root/.mix/elixir/{major}-{minor}"));
            std::fs::create_dir_all(&dir).ctx("creating", &dir)?;
            let link = dir.join("rebar3");
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink("/usr/bin/rebar3", &link).ctx("linking", &link)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) fn sample_versions() -> BTreeMap<String, String> {
    [
        ("nodejs", "20.19.2+dfsg-1+deb13u3"),
        ("npm", "9.2.0~ds1-3"),
        ("elixir", "1.18.3.dfsg-1"),
        ("erlang-base", "1:27.3.4.1+dfsg-1+deb13u4"),
        ("python3", "3.13.5-1"),
        ("golang-go", "2:1.24~2"),
        ("rustc", "1.85.1+dfsg1-1+deb13u1"),
        ("postgresql", "17+278+deb13u1"),
        ("postgresql-17", "17.12-0+deb13u1"),
        ("sqlite3", "3.46.1-7+deb13u2"),
        ("redis-server", "5:8.0.2-3+deb13u3"),
        ("rebar3", "3.24.0-1"),
    ]
    .into_iter()
    .map(|(p, v)| (p.to_owned(), v.to_owned()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_file() {
        let text = "Package: bash\nStatus: install ok installed\nVersion: 5.2.37-2\n\
                    Description: shell\n continued: line\n\n\
                    Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
                    Package: nodejs\nStatus: install ok installed\nArchitecture: amd64\n\
                    Version: 20.19.2+dfsg-1\n";
        let v = parse_status(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v["bash"], "5.2.37-2");
        assert_eq!(v["nodejs"], "20.19.2+dfsg-1");
        let key = key_versions(&v, &["nodejs".to_owned()]);
        assert_eq!(key.keys().collect::<Vec<_>>(), ["nodejs"]);
    }

    #[test]
    fn key_versions_take_the_servers_package() {
        let mut all = sample_versions();
        all.insert("postgresql-common".into(), "278".into());
        all.insert("gcc".into(), "4:14.2.0-1".into());
        let key = key_versions(&all, &["postgresql".to_owned()]);
        assert_eq!(
            key.keys().collect::<Vec<_>>(),
            ["erlang-base", "gcc", "postgresql", "postgresql-17"]
        );
    }

    #[test]
    fn upstream_versions() {
        for (debian, up) in [
            ("1:27.3.4.1+dfsg-1+deb13u4", "27.3.4.1"),
            ("20.19.2+dfsg-1+deb13u3", "20.19.2"),
            ("2:1.24~2", "1.24"),
            ("1.18.3.dfsg-1", "1.18.3"),
            ("156.0.8078.114-1~deb13u1", "156.0.8078.114"),
            ("5:8.0.2-3+deb13u3", "8.0.2"),
            ("3.13.5-1", "3.13.5"),
            ("17", "17"),
        ] {
            assert_eq!(upstream(debian), up, "{debian}");
        }
    }

    #[test]
    fn description_names_tools_and_servers() {
        let d = describe("trixie", &sample_versions());
        for want in [
            "Debian trixie",
            "- Node.js (node) 20.19.2",
            "- Elixir (elixir, mix, iex) 1.18.3",
            "- Erlang/OTP (erl) 27.3.4.1",
            "- Go (go) 1.24",
            "- PostgreSQL (firepit-postgres, psql) 17.12",
            "- Redis (redis-server, redis-cli) 8.0.2",
            "firepit-postgres start",
            POSTGRES_URL,
            "redis-cli ping",
            "sqlite3 FILE",
        ] {
            assert!(d.contains(want), "{want:?} not in\n{d}");
        }
        let bare = describe("bookworm", &BTreeMap::new());
        assert!(
            !bare.contains("PostgreSQL") && !bare.contains("Redis"),
            "{bare}"
        );
    }

    #[test]
    fn helpers_for_what_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/postgresql/17/main")).unwrap();
        std::fs::write(root.join("etc/postgresql/17/main/pg_hba.conf"), "peer\n").unwrap();
        add_helpers(root, "trixie", &sample_versions()).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        assert!(read("etc/motd").contains("firepit-postgres start"));
        assert!(read("etc/profile.d/firepit-motd.sh").contains("cat /etc/motd"));
        assert!(read("etc/profile.d/firepit-paths.sh").contains("/.cargo/bin"));
        assert!(read("etc/postgresql/17/main/pg_hba.conf").contains("127.0.0.1/32   trust"));
        assert!(read("etc/postgresql/17/main/conf.d/firepit.conf").contains("ssl = off"));
        let helper = root.join("usr/local/bin/firepit-postgres");
        assert_eq!(
            std::fs::metadata(&helper).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::read_link(root.join("root/.mix/elixir/1-18/rebar3")).unwrap(),
            Path::new("/usr/bin/rebar3")
        );
        // Again: nothing fails on what the first run made.
        add_helpers(root, "trixie", &sample_versions()).unwrap();

        let bare = tempfile::tempdir().unwrap();
        add_helpers(bare.path(), "bookworm", &BTreeMap::new()).unwrap();
        assert_eq!(std::fs::read_dir(bare.path()).unwrap().count(), 0);
    }
}
