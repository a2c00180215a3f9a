//! The web UI's built assets, embedded in the binary.
//!
//! The UI's sources live in `ui/` at the repository root (TypeScript, Vite,
//! xterm.js). Their build is committed in this crate's `dist/` (written by
//! `cargo xtask ui`, with `dist.stamp` naming the sources it came from), so
//! building firepit needs no Node.js; the build script embeds every file of
//! it. The daemon serves them (see `firepit-daemon`'s `api/ui.rs`).
#![warn(missing_docs)]

/// One built file of the UI.
#[derive(Debug)]
pub struct Asset {
    /// Its URL path, e.g. `/index.html` or `/assets/index-1a2b3c.js`.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
    /// Whether its name carries a hash of its content (Vite's `assets/`),
    /// so it may be cached forever.
    pub immutable: bool,
}

mod generated {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// A hash of the embedded files: changes whenever the UI does (an `ETag` for
/// the page).
pub const BUILD_HASH: &str = generated::BUILD_HASH;

/// Every embedded file.
pub fn assets() -> &'static [Asset] {
    generated::ASSETS
}

/// The file at a URL path, if the UI has one.
pub fn get(path: &str) -> Option<&'static Asset> {
    generated::ASSETS.iter().find(|a| a.path == path)
}

/// The single page (`index.html`) that every UI route answers with.
pub fn index() -> &'static Asset {
    get("/index.html").expect("the UI build always has index.html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_are_embedded() {
        let page = std::str::from_utf8(index().bytes).unwrap();
        assert_eq!(index().content_type, "text/html; charset=utf-8");
        assert!(!index().immutable);
        // Every script and stylesheet the page names is embedded, with its type.
        let mut named = 0;
        for part in page.split('"') {
            if part.starts_with("/assets/") {
                let a = get(part).unwrap_or_else(|| panic!("{part} is not embedded"));
                assert!(a.immutable);
                assert!(!a.bytes.is_empty());
                assert!(
                    a.content_type.starts_with("text/javascript")
                        || a.content_type.starts_with("text/css"),
                    "{part}: {}",
                    a.content_type
                );
                named += 1;
            }
        }
        assert!(named >= 2, "the page loads its script and styles: {page}");
        assert_eq!(BUILD_HASH.len(), 16);
        assert!(get("/nope.js").is_none());
    }

    #[test]
    fn exactly_the_committed_build_is_embedded() {
        let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
        let mut files = Vec::new();
        let mut dirs = vec![dist.clone()];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        assert_eq!(files.len(), assets().len());
        for f in files {
            let url = format!("/{}", f.strip_prefix(&dist).unwrap().to_str().unwrap());
            let a = get(&url).unwrap_or_else(|| panic!("{url} is not embedded"));
            assert_eq!(a.bytes, std::fs::read(&f).unwrap(), "{url}");
        }
    }
}
