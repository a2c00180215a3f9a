// What every end-to-end script starts with: its settings from the
// environment (the runner in crates/firepit/tests/it/ui.rs sets them), the
// screenshot folder made, and headless Chromium launched through
// playwright-core (from E2E_DEPS, where the runner installed it).

import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const require = createRequire(join(process.env.E2E_DEPS ?? ".", "package.json"));
const { chromium } = require("playwright-core");

/** The environment variable `name`; a script without it stops at once. */
export function need(name) {
  const v = process.env[name];
  if (!v) {
    console.log(`FAILED setup: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

/** The daemon's address (no trailing slash). */
export const url = need("FIREPIT_URL").replace(/\/$/, "");
/** The daemon's API token. */
export const token = need("FIREPIT_TOKEN");
/** Where the steps' screenshots go. */
export const shots = need("E2E_SHOTS");
mkdirSync(shots, { recursive: true });

/** How long a step waits for the page, ms. */
export const T = 60_000;

/** Headless Chromium (`$CHROMIUM`, or Debian's), with `extraArgs` besides the usual. */
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", ...extraArgs],
  });
}
