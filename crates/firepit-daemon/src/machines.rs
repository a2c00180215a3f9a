//! The seam between sessions and the machine backend: builds the backend from
//! the daemon's settings, turns a session into a machine spec, and connects to
//! a machine's guest.

use std::sync::Arc;

use firepit_guest_client::GuestClient;
use firepit_image::Image;
use firepit_machine::namespaces::{self, NamespacesBackend};
use firepit_machine::{Backend, GuestAddress, MachineId, MachineInfo, MachineSpec, MachineState};
use firepit_wire::api::{NetworkMode, Session};

use crate::config::DiskPool;
use crate::{Config, Error};

/// The machine backend for these settings (namespaces, the only one so far).
pub fn backend(config: &Config) -> Result<Arc<dyn Backend>, Error> {
    let mut ns = namespaces::Config::new(
        config.data_dir.join("machines"),
        config.data_dir.join("run"),
        config.launcher.clone(),
    );
    if let Some(name) = &config.instance {
        let (gateway, prefix) = instance_subnet(name);
        ns.cgroup_parent = format!("firepit-{name}");
        ns.nft_table = format!("firepit_{name}");
        ns.bridge = format!("fpb-{name}");
        // Veths are the prefix and a slot number: the dash keeps instance
        // `t1`'s slot 20 apart from instance `t12`'s slot 0.
        ns.veth_prefix = format!("fv{name}-");
        ns.gateway = gateway;
        ns.prefix = prefix;
    }
    if let Some(net) = config.subnet {
        ns.gateway = std::net::Ipv4Addr::from(u32::from(net.addr()) + 1);
        ns.prefix = net.prefix();
    }
    ns.allow_net = config.allow_net.clone();
    ns.extra_ca = config.extra_ca.clone();
    ns.env = config
        .proxy
        .as_ref()
        .map(|p| p.machine_env())
        .unwrap_or_default();
    let (image, dir) = config.disk_pool_paths();
    let size_bytes = match config.disk_pool {
        DiskPool::Off => None,
        DiskPool::Size(size) => Some(size),
        // Only used when the image is made; an existing one keeps its size.
        DiskPool::Auto if image.exists() => Some(namespaces::MIN_POOL),
        DiskPool::Auto => Some(auto_pool_size(&config.data_dir)?),
    };
    ns.disk = size_bytes.map(|size_bytes| namespaces::PoolConfig {
        image,
        dir,
        size_bytes,
    });
    let disk = ns.disk.is_some();
    Ok(Arc::new(NamespacesBackend::new(ns).map_err(|e| {
        if disk {
            Error::DiskPool(e)
        } else {
            Error::Machine(e)
        }
    })?))
}

/// Half the space free on `dir`'s file system, in whole MiB: what the disk
/// pool's image may grow to when nothing says otherwise, so that the
/// machines together can never take the host's last half.
fn auto_pool_size(dir: &std::path::Path) -> Result<u64, Error> {
    let free = namespaces::free_space(dir).map_err(Error::DiskPool)?;
    let size = (free / 2) & !((1 << 20) - 1);
    if size < namespaces::MIN_POOL {
        return Err(Error::BadRequest(format!(
            "{} has {} MiB free, too little for the machines' disk pool (half of it must be at least {} MiB); free some space, give --disk-pool-size, or turn disk limits off with --disk-pool-size off",
            dir.display(),
            free >> 20,
            namespaces::MIN_POOL >> 20
        )));
    }
    Ok(size)
}

/// The gateway and prefix of a named instance's subnet: a /24 in 10.100.0.0 –
/// 10.227.255.0, chosen by a hash of the name (FNV-1a), away from the default
/// install's 10.88.0.0/16.
pub fn instance_subnet(name: &str) -> (std::net::Ipv4Addr, u8) {
    let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let second = 100 + (hash % 128) as u8;
    let third = ((hash >> 8) % 256) as u8;
    (std::net::Ipv4Addr::new(10, second, third, 1), 24)
}

/// The machine id of a session id (the same text; checked by the caller).
pub fn id(session: &str) -> MachineId {
    MachineId::new(session).expect("session ids are valid machine ids")
}

/// The session id a machine belongs to.
pub fn id_str(m: &MachineInfo) -> String {
    m.id.as_str().to_owned()
}

/// Whether a recovered machine runs.
pub fn is_running(m: &MachineInfo) -> bool {
    m.state == MachineState::Running
}

/// The machine spec for a session made from `image`.
pub fn spec(config: &Config, session: &Session, image: &Image) -> MachineSpec {
    let limits = &session.limits;
    let defaults = &config.default_limits;
    MachineSpec {
        id: id(&session.id),
        image: image.rootfs.clone(),
        layers: image.lowers().split_off(1),
        // The image's owners on disk; the backend gives the machine a uid
        // range of its own and maps the image onto it.
        uid_base: image.manifest.uid_base,
        limits: firepit_machine::Limits {
            memory_bytes: limits
                .memory_bytes
                .or(defaults.memory_bytes)
                .unwrap_or(2 << 30),
            cpus: limits.cpus.or(defaults.cpus).unwrap_or(1.0),
            pids: limits.pids.or(defaults.pids).unwrap_or(4096),
            // No default here: a session made before disk limits has none.
            disk_bytes: limits.disk_bytes,
        },
        network: match session.network {
            NetworkMode::Nat => firepit_machine::Network::Nat,
            NetworkMode::None => firepit_machine::Network::None,
        },
        guest: config.guest_binary.clone(),
    }
}

/// Connects to a guest at `addr`, only if the machine's init is the one
/// that answers there.
pub async fn connect(addr: &GuestAddress) -> Result<GuestClient, firepit_guest_client::Error> {
    match addr {
        GuestAddress::Unix {
            path,
            pid: Some(pid),
        } => GuestClient::connect_unix_peer(path, *pid).await,
        GuestAddress::Unix { path, pid: None } => Err(firepit_guest_client::Error::Connect {
            path: path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the machine does not run",
            ),
        }),
    }
}

/// An image as the API shows it.
pub fn api_image(image: &Image) -> firepit_wire::api::Image {
    firepit_wire::api::Image {
        name: image.name.clone(),
        size_bytes: image.manifest.size_bytes,
        created_at: image.manifest.created as i64,
        source: image_source(&image.manifest),
    }
}

/// Where an image came from, as its manifest says: a session's (`image save` names it as
/// the builder), an OCI image's (the recipe says which way in, the mirror the reference or
/// path, the builder the manifest's digest), else the recipe's.
fn image_source(m: &firepit_image::Manifest) -> firepit_wire::api::ImageSource {
    use firepit_wire::api::ImageSource;
    if let Some(session) = m.builder.strip_prefix("firepit image save ") {
        return ImageSource {
            kind: "saved".into(),
            from: session.to_owned(),
            digest: None,
        };
    }
    match m.recipe.as_str() {
        "registry" | "archive" | "dockerfile" => ImageSource {
            kind: m.recipe.clone(),
            from: m.mirror.clone(),
            digest: m.builder.strip_prefix("firepit-oci ").map(str::to_owned),
        },
        recipe => ImageSource {
            kind: "recipe".into(),
            from: recipe.to_owned(),
            digest: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sources_from_manifests() {
        let m = firepit_image::Manifest {
            recipe: "registry".into(),
            mirror: "127.0.0.1:5000/app:1".into(),
            builder: "firepit-oci sha256:ab".into(),
            ..Default::default()
        };
        let s = image_source(&m);
        assert_eq!(
            (s.kind.as_str(), s.from.as_str(), s.digest.as_deref()),
            ("registry", "127.0.0.1:5000/app:1", Some("sha256:ab"))
        );
        let saved = image_source(&firepit_image::Manifest {
            builder: "firepit image save s1".into(),
            ..m
        });
        assert_eq!((saved.kind.as_str(), saved.from.as_str()), ("saved", "s1"));
        let built_in = image_source(&firepit_image::Manifest {
            recipe: "default".into(),
            ..Default::default()
        });
        assert_eq!(
            (built_in.kind.as_str(), built_in.from.as_str()),
            ("recipe", "default")
        );
        assert_eq!(built_in.digest, None);
    }

    #[test]
    fn instance_subnets_are_apart_from_the_default() {
        let (gw, prefix) = instance_subnet("t1");
        assert_eq!(prefix, 24);
        assert_eq!(gw.octets()[0], 10);
        assert!((100..228).contains(&gw.octets()[1]));
        assert_eq!(gw.octets()[3], 1);
        assert_ne!(instance_subnet("t1"), instance_subnet("t2"));
    }
}
