//! `firepit cp`: copies a file between this host and a session.
//!
//! Exactly one side is `ID:/absolute/path`. Uploads stream the file; downloads
//! stream into a temporary file renamed into place, so an interrupted copy
//! leaves nothing half-written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use reqwest::Method;
use tokio::io::AsyncWriteExt;

use crate::client::Client;

/// One side of a copy.
#[derive(Debug, PartialEq)]
enum Place {
    Local(PathBuf),
    Remote { id: String, path: String },
}

fn parse(s: &str) -> Place {
    match s.split_once(':') {
        Some((id, path))
            if !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && path.starts_with('/') =>
        {
            Place::Remote {
                id: id.to_owned(),
                path: path.to_owned(),
            }
        }
        _ => Place::Local(PathBuf::from(s)),
    }
}

/// `firepit cp FROM TO`
pub async fn cp(client: &Client, from: &str, to: &str) -> Result<()> {
    match (parse(from), parse(to)) {
        (Place::Local(src), Place::Remote { id, path }) => upload(client, &src, &id, &path).await,
        (Place::Remote { id, path }, Place::Local(dst)) => download(client, &id, &path, &dst).await,
        (Place::Local(_), Place::Local(_)) => {
            bail!("one side must be in a session, written ID:/absolute/path")
        }
        (Place::Remote { .. }, Place::Remote { .. }) => {
            bail!("copying between two sessions is not supported; copy through this host")
        }
    }
}

async fn upload(client: &Client, src: &Path, id: &str, path: &str) -> Result<()> {
    let file = tokio::fs::File::open(src)
        .await
        .with_context(|| format!("opening {}", src.display()))?;
    let meta = file.metadata().await?;
    if !meta.is_file() {
        bail!("{} is not a regular file", src.display());
    }
    let mut path = path.to_owned();
    if path.ends_with('/') {
        let name = src.file_name().context("the source has no file name")?;
        path.push_str(&name.to_string_lossy());
    }
    let body = reqwest::Body::wrap_stream(tokio_util_stream(file));
    client
        .send(
            client
                .request(Method::PUT, &format!("/v1/sessions/{id}/files"))
                .query(&[("path", path.as_str())])
                .header(reqwest::header::CONTENT_LENGTH, meta.len())
                .body(body),
        )
        .await?;
    Ok(())
}

fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 << 10];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

async fn download(client: &Client, id: &str, path: &str, dst: &Path) -> Result<()> {
    let dst = if dst.is_dir() {
        let name = Path::new(path)
            .file_name()
            .context("the source path has no file name")?;
        dst.join(name)
    } else {
        dst.to_owned()
    };
    let resp = client
        .send(
            client
                .request(Method::GET, &format!("/v1/sessions/{id}/files"))
                .query(&[("path", path)]),
        )
        .await?;
    let tmp = dst.with_file_name(format!(
        ".{}.firepit-part",
        dst.file_name().context("no file name")?.to_string_lossy()
    ));
    let mut out = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut body = resp.bytes_stream();
    let copied: Result<()> = async {
        while let Some(chunk) = body.next().await {
            out.write_all(&chunk.context("the download broke off")?)
                .await?;
        }
        out.flush().await?;
        Ok(())
    }
    .await;
    if let Err(e) = copied {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    tokio::fs::rename(&tmp, &dst)
        .await
        .with_context(|| format!("writing {}", dst.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_parse() {
        assert_eq!(
            parse("abc123:/etc/hosts"),
            Place::Remote {
                id: "abc123".into(),
                path: "/etc/hosts".into()
            }
        );
        assert_eq!(parse("./a:b"), Place::Local("./a:b".into()));
        assert_eq!(parse("abc:relative"), Place::Local("abc:relative".into()));
        assert_eq!(parse("/tmp/x"), Place::Local("/tmp/x".into()));
    }
}
