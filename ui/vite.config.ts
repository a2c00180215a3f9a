// The UI build: one page, hashed assets under /assets/, embedded into the
// daemon by the `firepit-ui` crate (whose build script runs this with
// `--outDir` in its cache).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
});
