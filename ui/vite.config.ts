// The UI build: one page, hashed assets under /assets/, embedded into the
// daemon by the `firepit-ui` crate. `npm run dev` proxies the API to a local
// daemon (FIREPIT_URL, default http://localhost:7777).
import { defineConfig } from "vite";

const daemon = process.env.FIREPIT_URL ?? "http://localhost:7777";

export default defineConfig({
  base: "/",
  build: {
    outDir: process.env.FIREPIT_UI_OUT ?? "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: { "/v1": { target: daemon, ws: true } },
  },
});
