//! Build an image by hand: `cargo run -p firepit-image --example build -- <recipe> <store-dir>`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let recipe = args.next().unwrap_or_else(|| "minimal".into());
    let dir = args.next().unwrap_or_else(|| "images".into());
    let store = firepit_image::ImageStore::open(std::path::Path::new(&dir))?;
    let recipe = firepit_image::Recipe::builtin(&recipe)?;
    let image = store.build(&recipe, &mut |p| eprintln!("{p}"))?;
    println!(
        "{} at {} ({} MiB)",
        image.name,
        image.rootfs.display(),
        image.manifest.size_bytes >> 20
    );
    Ok(())
}
