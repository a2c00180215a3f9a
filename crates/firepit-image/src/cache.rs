//! Build-once images for tests and CI: [`ensure`] builds an image only if the store lacks it,
//! so a store kept in a cache directory outside the repository is reused between runs.

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::recipe::Recipe;
use crate::store::{Image, ImageStore};

/// The environment variable naming a directory where tests keep built images between runs.
pub const CACHE_ENV: &str = "FIREPIT_IMAGE_CACHE";

/// The image for `recipe` from `store`, built first if missing. Concurrent callers (several
/// test processes sharing one cache) build it once: the others wait and reuse it.
pub fn ensure(
    store: &ImageStore,
    recipe: &Recipe,
    progress: &mut dyn FnMut(Progress),
) -> Result<Image> {
    match store.get(&recipe.name) {
        Err(Error::NotFound { .. }) => {}
        other => return other,
    }
    let _lock = store.name_lock(&recipe.name)?;
    match store.get(&recipe.name) {
        Err(Error::NotFound { .. }) => store.build_locked(recipe, progress),
        other => other,
    }
}

/// The store named by `FIREPIT_IMAGE_CACHE`, if that is set.
pub fn store_from_env() -> Result<Option<ImageStore>> {
    match std::env::var_os(CACHE_ENV) {
        Some(dir) if !dir.is_empty() => ImageStore::open(std::path::Path::new(&dir)).map(Some),
        _ => Ok(None),
    }
}
