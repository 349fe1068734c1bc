// Launching the system's headless Chromium with the flags that work on these machines
// (../../../shared/docs/ENVIRONMENT.md, "Headless Chromium"), for the browser tests here.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** Where Chromium is: $CHROMIUM, else Debian's /usr/bin/chromium. */
export const DEFAULT_CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

// WebRTC on loopback needs --allow-loopback-in-peer-connection and a granted microphone
// permission (launch() grants it), or Chrome gathers no usable candidate. Playwright adds
// --headless itself.
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
  "--autoplay-policy=no-user-gesture-required",
  "--allow-loopback-in-peer-connection",
];

/**
 * Starts Chromium with a fresh user-data-dir and grants the microphone permission to
 * `origins` (which makes Chrome hand their pages plain 127.0.0.1 host candidates instead of
 * mDNS names). Returns `{context, close}`; `close()` ends the browser and removes the profile.
 */
export async function launch({ executablePath = DEFAULT_CHROMIUM, origins = [] } = {}) {
  if (!fs.existsSync(executablePath)) {
    throw new Error(`no Chromium at ${executablePath} (run scripts/setup)`);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "shoal-chromium-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 720 },
      timeout: 60_000,
    });
    for (const origin of origins) await context.grantPermissions(["microphone"], { origin });
  } catch (e) {
    if (context) await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
    throw e;
  }
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, close };
}
