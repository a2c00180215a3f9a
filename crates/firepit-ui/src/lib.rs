//! The web UI's built assets, embedded in the binary.
//!
//! The UI's sources live in `ui/` at the repository root (TypeScript, Vite,
//! xterm.js). This crate's build script builds them with `npm ci` and Vite
//! whenever they change, caching the output by a hash of the sources under
//! `$FIREPIT_CACHE/ui` (default `/var/cache/firepit/ui`, or the build's own
//! output dir when that is not writable), and embeds every file of the
//! result. The daemon serves them (see `firepit-daemon`'s `api/ui.rs`).
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

/// A hash of the UI's sources: changes whenever the UI does (an `ETag` for
/// the page).
pub const SOURCE_HASH: &str = generated::SOURCE_HASH;

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
        assert_eq!(SOURCE_HASH.len(), 16);
        assert!(get("/nope.js").is_none());
    }
}
