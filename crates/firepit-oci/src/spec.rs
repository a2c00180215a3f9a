//! The documents of the OCI image spec (and Docker's schema 2, which has the same shape):
//! descriptors, manifests, indexes (manifest lists) and the image config, as far as firepit
//! reads them. Unknown fields are ignored, as the spec asks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The largest manifest, index or config firepit reads (the registry spec's own advice is 4 MiB).
pub const DOCUMENT_LIMIT: u64 = 4 << 20;

/// A descriptor: what a document points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the content.
    #[serde(default)]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The platform, in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (an OCI layout's `org.opencontainers.image.ref.name`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A platform in an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `linux`.
    pub os: String,
    /// `v8`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// 2.
    pub schema_version: u32,
    /// The manifest's media type, when it says.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
}

/// An index (manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// 2.
    pub schema_version: u32,
    /// The index's media type, when it says.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
}

/// The image config (`application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    /// The architecture the image is for.
    #[serde(default)]
    pub architecture: String,
    /// The OS.
    #[serde(default)]
    pub os: String,
    /// How to run it.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RootFs {
    /// `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The digest of each layer's uncompressed tar, base first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// The part of an image config that says how to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `NAME=value` entries.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// The working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group`, `uid:gid`.
    #[serde(default)]
    pub user: Option<String>,
    /// The entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// The command (the entrypoint's arguments when there is one).
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `port/proto` → `{}`.
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// Labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// What a fetched manifest document turned out to be.
#[derive(Debug, Clone)]
pub enum Document {
    /// An image manifest.
    Manifest(Manifest),
    /// An index of manifests.
    Index(Index),
}

impl Document {
    /// Parse a manifest or index, by its media type or, failing that, by its shape.
    pub fn parse(what: &str, media_type: Option<&str>, bytes: &[u8]) -> Result<Document> {
        let bad = |e: serde_json::Error| Error::bad(what, e.to_string());
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            schema_version: Option<u32>,
            media_type: Option<String>,
            manifests: Option<serde_json::Value>,
            layers: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(bad)?;
        if probe.schema_version != Some(2) {
            return Err(Error::bad(
                what,
                "only schema version 2 manifests are supported",
            ));
        }
        let kind = media_type
            .filter(|m| !m.is_empty() && *m != "application/json" && *m != "text/plain")
            .map(str::to_owned)
            .or(probe.media_type);
        match kind.as_deref() {
            Some(OCI_INDEX | DOCKER_LIST) => {
                Ok(Document::Index(serde_json::from_slice(bytes).map_err(bad)?))
            }
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => Ok(Document::Manifest(
                serde_json::from_slice(bytes).map_err(bad)?,
            )),
            Some(other) if probe.manifests.is_none() && probe.layers.is_none() => {
                Err(Error::bad(what, format!("unsupported media type {other}")))
            }
            _ if probe.manifests.is_some() => {
                Ok(Document::Index(serde_json::from_slice(bytes).map_err(bad)?))
            }
            _ => Ok(Document::Manifest(
                serde_json::from_slice(bytes).map_err(bad)?,
            )),
        }
    }
}

/// The host's architecture in OCI naming, and its variant.
pub fn host_platform() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        other => (other, None),
    }
}

/// The manifest of `index` for linux on this host's architecture.
pub fn select_platform<'a>(index: &'a Index, reference: &str) -> Result<&'a Descriptor> {
    let (arch, variant) = host_platform();
    let fits = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
    };
    let exact = index.manifests.iter().filter(fits).find(|d| {
        let v = d.platform.as_ref().and_then(|p| p.variant.as_deref());
        v.is_none() || v == variant
    });
    exact
        .or_else(|| index.manifests.iter().find(fits))
        .ok_or_else(|| Error::NoMatchingPlatform {
            reference: reference.to_owned(),
            os: "linux".into(),
            arch: arch.into(),
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn picks_the_hosts_platform() {
        let (arch, _) = host_platform();
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1,"platform":{{"architecture":"mips","os":"linux"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":2,"platform":{{"architecture":"{arch}","os":"linux"}}}}]}}"#
        );
        let Document::Index(index) = Document::parse("index", None, json.as_bytes()).unwrap()
        else {
            panic!("not an index")
        };
        assert_eq!(select_platform(&index, "x").unwrap().digest.as_str(), D2);
        let only_mips = Index {
            manifests: index.manifests[..1].to_vec(),
            ..index
        };
        let err = select_platform(&only_mips, "x").unwrap_err().to_string();
        assert!(err.contains("linux/mips"), "{err}");
    }

    #[test]
    fn refuses_schema_1_and_garbage() {
        assert!(Document::parse("m", None, br#"{"schemaVersion":1}"#).is_err());
        assert!(Document::parse("m", None, b"not json").is_err());
        let bad_digest =
            r#"{"schemaVersion":2,"config":{"digest":"sha256:../x","size":1},"layers":[]}"#;
        assert!(Document::parse("m", Some(OCI_MANIFEST), bad_digest.as_bytes()).is_err());
    }
}
