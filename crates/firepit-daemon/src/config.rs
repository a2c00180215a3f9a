//! The daemon's settings, resolved by the CLI from flags, environment and
//! defaults, and checked by [`Config::validate`] before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use firepit_wire::api::Limits;

use crate::Error;

/// Everything the daemon needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Where the store, token, machines and images live.
    pub data_dir: PathBuf,
    /// Where images live; `<data_dir>/images` unless set apart (CI keeps a cache).
    pub images_dir: PathBuf,
    /// Domain of preview URLs (`<port>-<session>.<domain>`).
    pub domain: String,
    /// The port preview URLs name (`http://<port>-<session>.<domain>:<public_port>/`):
    /// the port the daemon's listener got, set by `firepit up` after binding.
    pub public_port: u16,
    /// Image used when a request names none.
    pub default_image: String,
    /// Limits used when a request gives none.
    pub default_limits: Limits,
    /// The executable that launches machines (`firepit __machine-launch`).
    pub launcher: PathBuf,
    /// The static guest executable bind-mounted into every machine.
    pub guest_binary: PathBuf,
    /// Largest file accepted by a single upload, in bytes.
    pub max_upload_bytes: u64,
    /// Name of this daemon among several on one host (tests, a second
    /// install): its machines get their own cgroup parent, firewall table,
    /// bridge and subnet. `None` is the default install.
    pub instance: Option<String>,
    /// IPv4 ranges machines may reach although private, shared or
    /// link-local (`firepit up --allow-net`).
    pub allow_net: Vec<firepit_machine::namespaces::Ipv4Net>,
    /// The model the agents use; `None` leaves the agent endpoints saying how
    /// to configure one.
    pub model: Option<firepit_agent::ModelConfig>,
    /// The forge (GitHub or GitHub Enterprise) and its token.
    pub forge: firepit_forge::ForgeConfig,
}

impl Config {
    /// Settings with the documented defaults under `data_dir`.
    pub fn new(data_dir: PathBuf, launcher: PathBuf, guest_binary: PathBuf) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7777)),
            images_dir: data_dir.join("images"),
            data_dir,
            domain: "localhost".into(),
            public_port: 7777,
            default_image: "default".into(),
            default_limits: Limits {
                memory_bytes: Some(2 << 30),
                cpus: Some(1.0),
                pids: Some(4096),
            },
            launcher,
            guest_binary,
            max_upload_bytes: 512 << 20,
            instance: None,
            allow_net: Vec::new(),
            model: None,
            forge: firepit_forge::ForgeConfig::new("https://github.com", None, None)
                .expect("the default forge URL is valid"),
        }
    }

    /// The preview URL of `port` in `session`.
    pub fn preview_url(&self, session: &str, port: u16) -> String {
        format!(
            "http://{port}-{session}.{}:{}/",
            self.domain, self.public_port
        )
    }

    /// Refuses settings that cannot work, saying which and why.
    pub fn validate(&self) -> Result<(), Error> {
        let domain_ok = !self.domain.is_empty()
            && self.domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !domain_ok {
            return Err(Error::BadRequest(format!(
                "--domain {:?} is not a DNS name like `localhost` or `dev.example.com`",
                self.domain
            )));
        }
        if let Some(name) = &self.instance
            && (!(1..=6).contains(&name.len())
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        {
            return Err(Error::BadRequest(format!(
                "instance name {name:?} must be 1 to 6 characters of a-z and 0-9"
            )));
        }
        if !self.launcher.is_file() {
            return Err(Error::BadRequest(format!(
                "the machine launcher {} does not exist",
                self.launcher.display()
            )));
        }
        if !self.guest_binary.is_file() {
            return Err(Error::BadRequest(format!(
                "the guest executable {} does not exist",
                self.guest_binary.display()
            )));
        }
        crate::sessions::check_limits(&self.default_limits)
    }
}
