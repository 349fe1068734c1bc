#!/usr/bin/env node
// Shoal's browser end-to-end test: headless Chromium (the system's, driven by playwright-core)
// opens a channel page in several tabs, like real viewers, and checks that every one plays,
// that the swarm carries most of the bytes to at least one of them and that every chunk
// verified; with --embed, a page on another origin that mounts the player with the
// <script src=".../embed.js"> snippet has to play too.
//
//   node e2e.mjs --server http://127.0.0.1:8080 [--channel demo] [--pages 3] [--seconds 20]
//                [--embed] [--screenshot shot.png] [--chromium /usr/bin/chromium]
//                [--ready-timeout 30] [--stagger 1]
//
// Progress, console errors and page errors go to stderr. The LAST stdout line is one JSON
// object: `per_page` (one entry per page) and summary fields (`pages`, `all_played`,
// `max_offload`, `min_chunks_verified`, `total_rejected`, `playback_delay_p50`,
// `playback_delay_max`, `startup_max`, `embed_played`, `ok`, `failures`). Exit code 0 when
// every check passed, 1 when a check failed, 2 when the harness itself could not run.
//
// The JS API it reads is web/shoal.d.ts: the channel page sets `window.shoalPlayer`, the
// embed's <shoal-player> element exposes `.player`; `player.stats()`, `player.on('error')`,
// `player.video`.

import http from "node:http";
import fs from "node:fs";
import { parseArgs } from "node:util";
import { launch, DEFAULT_CHROMIUM } from "./chromium.mjs";

/** Keys of the contract's Stats copied into the report (plus whatever else stats() has). */
const STAT_KEYS = [
  "state", "mode", "peerId", "peers", "bytesFromPeers", "bytesFromSeeder", "bytesFromHttp",
  "bytesToPeers", "offload", "playbackDelay", "deliveryDelayP95", "stalls", "stallSeconds",
  "chunksVerified", "chunksRejected", "startupSeconds", "latestSeq", "bufferSeconds",
  "uploadLimit",
];

/** How far currentTime has to move over the sampling window to count as playing. */
const MIN_ADVANCE_S = 1.0;
/** Chunk requests an HTTP-only page may see answered 404 (see the check below). */
const MAX_HTTP_CHUNK_MISSES = 3;

const log = (...a) => console.error("e2e:", ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round = (x, d = 3) => (typeof x === "number" && Number.isFinite(x) ? Number(x.toFixed(d)) : x ?? null);

function usage(msg) {
  if (msg) console.error(`e2e: ${msg}`);
  console.error(
    "usage: node e2e.mjs --server URL [--channel NAME] [--pages N] [--seconds S] [--embed]\n" +
      "                    [--http-only-page]\n" +
      "                    [--screenshot PATH] [--chromium PATH] [--ready-timeout S] [--stagger S]",
  );
  process.exit(2);
}

function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        server: { type: "string" },
        channel: { type: "string", default: "demo" },
        pages: { type: "string", default: "3" },
        seconds: { type: "string", default: "20" },
        embed: { type: "boolean", default: false },
        "http-only-page": { type: "boolean", default: false },
        screenshot: { type: "string" },
        chromium: { type: "string", default: DEFAULT_CHROMIUM },
        "ready-timeout": { type: "string", default: "30" },
        stagger: { type: "string", default: "1" },
        help: { type: "boolean", default: false },
      },
    }));
  } catch (e) {
    usage(e.message);
  }
  if (values.help) usage();
  if (!values.server) usage("--server is required");
  let server;
  try {
    server = new URL(values.server);
  } catch {
    usage(`bad --server URL: ${values.server}`);
  }
  const num = (name, min) => {
    const v = Number(values[name]);
    if (!Number.isFinite(v) || v < min) usage(`--${name} must be a number >= ${min}`);
    return v;
  };
  return {
    server: server.origin + server.pathname.replace(/\/+$/, ""),
    serverOrigin: server.origin,
    channel: values.channel,
    pages: Math.floor(num("pages", 1)),
    seconds: num("seconds", 1),
    embed: values.embed,
    httpOnlyPage: values["http-only-page"],
    screenshot: values.screenshot ?? null,
    chromium: values.chromium,
    readyTimeout: num("ready-timeout", 1),
    stagger: num("stagger", 0),
  };
}

const escapeHtml = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

/** Another origin (another port on 127.0.0.1) serving a page that embeds the player with
 *  the <script> snippet, as a third-party site would. */
async function startEmbedSite(opts) {
  const html = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Someone else's site</title></head>
<body style="font-family: sans-serif; margin: 2rem">
<h1>Someone else's site</h1>
<p>A Shoal player embedded with the script snippet:</p>
<script src="${escapeHtml(opts.server)}/embed.js" data-channel="${escapeHtml(opts.channel)}"></script>
<p>Text after the player.</p>
</body>
</html>
`;
  const server = http.createServer((req, res) => {
    if (req.url === "/" || req.url.startsWith("/?")) {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
      res.end(html);
    } else if (req.url === "/favicon.ico") {
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found\n");
    }
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  return { server, origin: `http://127.0.0.1:${port}`, url: `http://127.0.0.1:${port}/` };
}

// --- in the page -------------------------------------------------------------------------
// Functions below run inside the browser (page.evaluate), so each is self-contained; `kind`
// says where the player is: "channel" (the page's window.shoalPlayer) or "embed" (the
// <shoal-player> element's .player). No eval: a page's CSP may forbid it.

/** Finds the player, hooks its error and state events once; true when it is there. */
function hookPlayer(kind) {
  const el = document.querySelector("shoal-player");
  const player = kind === "embed" ? el && el.player : window.shoalPlayer;
  if (!player || typeof player.stats !== "function") return false;
  if (!window.__e2e) {
    window.__e2e = { errors: [], states: [] };
    try {
      player.on("error", (e) =>
        window.__e2e.errors.push({ code: e?.code ?? null, fatal: !!e?.fatal, message: String(e?.message ?? e) }),
      );
      player.on("state", (s) => window.__e2e.states.push(s));
    } catch (e) {
      window.__e2e.errors.push({ code: "harness", fatal: false, message: `player.on failed: ${e}` });
    }
  }
  return true;
}

/** One sample: the video's clock and the player's stats. */
function samplePlayer({ kind, keys }) {
  const el = document.querySelector("shoal-player");
  const player = kind === "embed" ? el && el.player : window.shoalPlayer;
  if (!player) return { missing: true };
  const video = player.video || document.querySelector("video");
  let stats = null;
  let statsError = null;
  try {
    const s = player.stats();
    stats = {};
    for (const k of Object.keys(s)) stats[k] = s[k];
    for (const k of keys) if (s[k] !== undefined) stats[k] = s[k];
  } catch (e) {
    statsError = String(e);
  }
  return {
    currentTime: video ? video.currentTime : null,
    paused: video ? video.paused : null,
    readyState: video ? video.readyState : null,
    videoError: video && video.error ? `${video.error.code}: ${video.error.message}` : null,
    stats,
    statsError,
    errors: window.__e2e ? window.__e2e.errors.slice() : [],
  };
}

// --- the run -----------------------------------------------------------------------------

function quantile(xs, q) {
  const v = xs.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const i = (v.length - 1) * q;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return v[lo] + (v[hi] - v[lo]) * (i - lo);
}

async function main() {
  const opts = options();
  const started = Date.now();
  const elapsed = () => ((Date.now() - started) / 1000).toFixed(1);
  if (!fs.existsSync(opts.chromium)) {
    return fatal(`no Chromium at ${opts.chromium} (run scripts/setup)`);
  }

  const embedSite = opts.embed ? await startEmbedSite(opts) : null;
  let browser = null;
  // Whatever happens, the browser, its profile and the embed site go away.
  const cleanup = async () => {
    if (browser) await browser.close();
    browser = null;
    if (embedSite) embedSite.server.close();
  };
  // A hung browser must not hang the caller: a hard deadline well past the planned run.
  const deadlineS = opts.readyTimeout + opts.seconds + opts.pages * opts.stagger + 90;
  const deadline = setTimeout(async () => {
    log(`giving up after ${deadlineS} s`);
    await cleanup();
    fatal(`the run did not finish within ${deadlineS} s`);
  }, deadlineS * 1000);
  deadline.unref();

  try {
    log(`launching ${opts.chromium}`);
    // A fresh profile; the microphone permission for both origins lets Chrome hand their
    // pages plain 127.0.0.1 host candidates (WebRTC on loopback).
    browser = await launch({
      executablePath: opts.chromium,
      origins: [opts.serverOrigin, ...(embedSite ? [embedSite.origin] : [])],
    });
    const { context } = browser;
    log(`chromium ${context.browser()?.version() ?? ""} up after ${elapsed()} s`);
    // Errors the <shoal-player> element reports (its `shoal-error` event) before there is a
    // player to subscribe to: they say why play() failed.
    await context.addInitScript(() => {
      window.__e2eElementErrors = [];
      document.addEventListener(
        "shoal-error",
        (e) => {
          const d = e.detail || {};
          window.__e2eElementErrors.push(`${d.code ?? "?"}${d.fatal ? " (fatal)" : ""}: ${d.message ?? d}`);
        },
        true,
      );
    });

    // The pages: N channel pages, then the embed page on the other origin.
    const targets = [];
    for (let i = 0; i < opts.pages; i++) {
      targets.push({
        name: `page${i + 1}`,
        kind: "channel",
        url: `${opts.server}/c/${encodeURIComponent(opts.channel)}`,
        getter: "window.shoalPlayer",
      });
    }
    if (opts.httpOnlyPage) {
      // The iframe page with http-only: what a browser without WebRTC gets.
      targets.push({
        name: "http-only",
        kind: "http",
        url: `${opts.server}/embed/${encodeURIComponent(opts.channel)}?http-only`,
        getter: "window.shoalPlayer",
      });
    }
    if (embedSite) {
      targets.push({
        name: "embed",
        kind: "embed",
        url: embedSite.url,
        getter: "document.querySelector('shoal-player').player",
      });
    }

    for (const [i, t] of targets.entries()) {
      if (i > 0 && opts.stagger > 0) await sleep(opts.stagger * 1000);
      t.pageErrors = [];
      t.consoleErrors = [];
      t.page = i === 0 && context.pages().length ? context.pages()[0] : await context.newPage();
      t.page.on("console", (msg) => {
        if (msg.type() !== "error") return;
        const loc = msg.location();
        const where = loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : "";
        const text = `${msg.text()}${where}`;
        t.consoleErrors.push(text);
        console.error(`[${t.name} console.error] ${text}`);
      });
      t.page.on("pageerror", (err) => {
        const text = String(err && err.stack ? err.stack : err);
        t.pageErrors.push(text);
        console.error(`[${t.name} pageerror] ${text}`);
      });
      t.page.on("crash", () => {
        t.pageErrors.push("the page crashed");
        console.error(`[${t.name}] the page crashed`);
      });
      t.openedAt = Date.now();
      log(`${t.name}: opening ${t.url}`);
      try {
        const resp = await t.page.goto(t.url, { waitUntil: "domcontentloaded", timeout: 30_000 });
        if (resp && !resp.ok()) t.pageErrors.push(`GET ${t.url} answered ${resp.status()}`);
      } catch (e) {
        t.pageErrors.push(`could not open ${t.url}: ${String(e.message).split("\n")[0]}`);
      }
    }

    // Wait for every player (play() resolved) and hook its events.
    await Promise.all(
      targets.map(async (t) => {
        const until = t.openedAt + opts.readyTimeout * 1000;
        while (Date.now() < until) {
          try {
            if (await t.page.evaluate(hookPlayer, t.kind)) {
              t.readySeconds = (Date.now() - t.openedAt) / 1000;
              log(`${t.name}: player ready ${t.readySeconds.toFixed(1)} s after opening`);
              return;
            }
          } catch {
            // navigating or crashed: try again until the deadline
          }
          await sleep(100);
        }
        let why = [];
        try {
          why = await t.page.evaluate(() => window.__e2eElementErrors || []);
        } catch {
          // the page is gone; its errors were printed as they came
        }
        t.pageErrors.push(
          `no player ${opts.readyTimeout} s after opening (${t.getter})` +
            (why.length ? `; <shoal-player> reported: ${why.join("; ")}` : ""),
        );
        log(`${t.name}: no player after ${opts.readyTimeout} s`);
      }),
    );
    const ready = targets.filter((t) => t.readySeconds !== undefined).length;

    // Sample every page once a second.
    log(ready ? `sampling for ${opts.seconds} s` : "no player on any page: nothing to sample");
    const sample = async (t) => {
      try {
        return await t.page.evaluate(samplePlayer, { kind: t.kind, keys: STAT_KEYS });
      } catch (e) {
        return { missing: true, evaluateError: String(e.message || e) };
      }
    };
    for (const t of targets) t.samples = [];
    const sampleStart = Date.now();
    // With no player anywhere there is nothing to watch: report at once.
    for (let tick = 0; ready > 0; tick++) {
      const now = await Promise.all(targets.map(sample));
      now.forEach((s, i) => targets[i].samples.push(s));
      if (tick % 5 === 0 || Date.now() - sampleStart >= opts.seconds * 1000) {
        const line = targets
          .map((t, i) => {
            const s = now[i];
            if (s.missing) return `${t.name} -`;
            const st = s.stats || {};
            return (
              `${t.name} t=${round(s.currentTime, 1)} ${st.state ?? "?"} peers=${st.peers ?? "?"} ` +
              `offload=${round(st.offload, 2)} delay=${round(st.playbackDelay, 2)} ok=${st.chunksVerified ?? "?"}`
            );
          })
          .join(" | ");
        log(`+${((Date.now() - sampleStart) / 1000).toFixed(0)}s ${line}`);
      }
      if (Date.now() - sampleStart >= opts.seconds * 1000) break;
      await sleep(1000);
    }

    let screenshot = null;
    if (opts.screenshot && targets.length) screenshot = await takeScreenshot(targets[0].page, opts.screenshot);

    const report = buildReport(opts, targets, screenshot);
    await cleanup();
    clearTimeout(deadline);
    for (const f of report.failures) log(`FAILED: ${f}`);
    log(report.ok ? `all checks passed (${elapsed()} s)` : `${report.failures.length} check(s) failed (${elapsed()} s)`);
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exitCode = report.ok ? 0 : 1;
  } catch (e) {
    await cleanup();
    clearTimeout(deadline);
    fatal(String(e && e.stack ? e.stack : e));
  }
}

/** Shows the stats overlay of the page's <shoal-player> (its toggleStats(true)), then saves a
 *  screenshot. */
async function takeScreenshot(page, file) {
  try {
    const toggled = await page.evaluate(() => {
      const el = document.querySelector("shoal-player");
      if (!el || typeof el.toggleStats !== "function") return false;
      el.toggleStats(true);
      return true;
    });
    // Show the controls (live badge, buttons) too, as a viewer moving the mouse would.
    await page.mouse.move(640, 300);
    await page.mouse.move(660, 320);
    if (toggled) await sleep(1200); // let the overlay fill in and its chart draw a point
    // Playwright's CSS engine looks into open shadow roots.
    const overlayVisible = await page.locator("shoal-player .stats").first().isVisible().catch(() => false);
    await page.screenshot({ path: file, timeout: 10_000 });
    log(`screenshot saved to ${file} (stats overlay ${overlayVisible ? "visible" : "not visible"})`);
    return { path: file, statsOverlayVisible: overlayVisible };
  } catch (e) {
    log(`screenshot failed: ${String(e.message || e).split("\n")[0]}`);
    return { path: null, error: String(e.message || e).split("\n")[0] };
  }
}

function buildReport(opts, targets, screenshot) {
  const failures = [];
  const perPage = targets.map((t) => {
    const samples = t.samples.filter((s) => !s.missing && typeof s.currentTime === "number");
    const first = samples[0];
    const last = samples[samples.length - 1];
    const lastAny = t.samples[t.samples.length - 1] || {};
    const st = (last && last.stats) || {};
    const advance = first && last ? last.currentTime - first.currentTime : 0;
    const playerErrors = (last && last.errors) || lastAny.errors || [];
    const errors = [
      ...t.pageErrors,
      ...playerErrors.map((e) => `player error ${e.code}${e.fatal ? " (fatal)" : ""}: ${e.message}`),
    ];
    const videoError = samples.map((s) => s.videoError).find((v) => v);
    if (videoError) errors.push(`video element error ${videoError}`);
    if (last && last.statsError) errors.push(`stats() threw: ${last.statsError}`);
    if (lastAny.evaluateError) errors.push(`page not readable at the end: ${lastAny.evaluateError}`);
    if (st.state === "destroyed") errors.push("the player ended destroyed");
    const played = advance >= MIN_ADVANCE_S && errors.length === 0;
    const entry = {
      url: t.url,
      kind: t.kind,
      readySeconds: round(t.readySeconds ?? null),
      startupSeconds: round(st.startupSeconds ?? null),
      playbackDelay: round(st.playbackDelay ?? null),
      deliveryDelayP95: round(st.deliveryDelayP95 ?? null),
      offload: round(st.offload ?? null),
      peers: st.peers ?? null,
      bytesFromPeers: st.bytesFromPeers ?? null,
      bytesFromSeeder: st.bytesFromSeeder ?? null,
      bytesFromHttp: st.bytesFromHttp ?? null,
      bytesToPeers: st.bytesToPeers ?? null,
      chunksVerified: st.chunksVerified ?? null,
      chunksRejected: st.chunksRejected ?? null,
      stalls: st.stalls ?? null,
      stallSeconds: round(st.stallSeconds ?? null),
      state: st.state ?? null,
      mode: st.mode ?? null,
      currentTime: round(last ? last.currentTime : null),
      currentTimeAdvance: round(advance),
      currentTimeAdvanced: advance >= MIN_ADVANCE_S,
      played,
      errors,
      consoleErrors: t.consoleErrors,
    };
    const who = `${t.name} (${t.url})`;
    if (t.readySeconds === undefined) {
      // Nothing else can be read without a player: one failure that says why.
      failures.push(`${who}: no player: ${errors.join("; ")}`);
      return entry;
    }
    if (!entry.currentTimeAdvanced) {
      failures.push(`${who}: video.currentTime advanced ${round(advance, 2)} s in ${opts.seconds} s, want >= ${MIN_ADVANCE_S}`);
    }
    if (errors.length) failures.push(`${who}: errors: ${errors.join("; ")}`);
    if (!(entry.chunksVerified > 0)) failures.push(`${who}: chunksVerified is ${entry.chunksVerified}, want > 0`);
    if (entry.chunksRejected !== 0) failures.push(`${who}: chunksRejected is ${entry.chunksRejected}, want 0`);
    if (t.kind === "http" && (entry.mode !== "http" || entry.bytesFromPeers !== 0 || !(entry.bytesFromHttp > 0))) {
      failures.push(
        `${who}: an HTTP-only player must fetch everything over HTTP: mode ${entry.mode}, ` +
          `bytesFromPeers ${entry.bytesFromPeers}, bytesFromHttp ${entry.bytesFromHttp}`,
      );
    }
    // The HTTP-only player asks for each next chunk with ?wait, and the server holds the
    // request until the chunk exists: a miss (404) means a chunk the demo took more than 5 s
    // to publish. Polling without the wait gave about five a second.
    const chunkMisses = t.consoleErrors.filter((e) => e.includes("404") && e.includes("/chunks/")).length;
    if (t.kind === "http" && chunkMisses > MAX_HTTP_CHUNK_MISSES) {
      failures.push(`${who}: ${chunkMisses} chunk requests answered 404, want at most ${MAX_HTTP_CHUNK_MISSES}`);
    }
    return entry;
  });

  const channelPages = perPage.filter((p) => p.kind === "channel");
  const embedPage = perPage.find((p) => p.kind === "embed");
  const offloads = channelPages.map((p) => p.offload).filter((x) => typeof x === "number");
  const maxOffload = offloads.length ? Math.max(...offloads) : null;
  if (!(maxOffload > 0.5)) {
    failures.push(`no channel page got most of its bytes from peers: max offload ${maxOffload}, want > 0.5`);
  }
  if (opts.embed && !(embedPage && embedPage.played)) failures.push("the <script> embed page did not play");
  const verified = perPage.map((p) => p.chunksVerified).filter((x) => typeof x === "number");
  const delays = perPage.map((p) => p.playbackDelay);
  const startups = perPage.map((p) => p.startupSeconds).filter((x) => typeof x === "number");
  // All pages together: the share of what viewers received that came from other viewers.
  const swarmPages = perPage.filter((p) => p.kind !== "http");
  const sum = (k) => swarmPages.reduce((a, p) => a + (typeof p[k] === "number" ? p[k] : 0), 0);
  const received = sum("bytesFromPeers") + sum("bytesFromSeeder") + sum("bytesFromHttp");
  return {
    server: opts.server,
    channel: opts.channel,
    seconds: opts.seconds,
    pages: perPage.length,
    channel_pages: channelPages.length,
    all_played: perPage.every((p) => p.played),
    max_offload: maxOffload,
    swarm_offload: received > 0 ? round(sum("bytesFromPeers") / received) : null,
    offload_bound: swarmPages.length > 0 ? round((swarmPages.length - 1) / swarmPages.length) : null,
    startup_p50: round(quantile(startups, 0.5)),
    min_chunks_verified: verified.length === perPage.length ? Math.min(...verified) : null,
    total_rejected: perPage.reduce((a, p) => a + (p.chunksRejected ?? 0), 0),
    playback_delay_p50: round(quantile(delays, 0.5)),
    playback_delay_max: round(quantile(delays, 1)),
    startup_max: startups.length ? round(Math.max(...startups)) : null,
    embed_played: opts.embed ? Boolean(embedPage && embedPage.played) : null,
    screenshot,
    ok: failures.length === 0,
    failures,
    per_page: perPage,
  };
}

/** The harness itself failed: still one JSON line last, and exit code 2. */
function fatal(message) {
  log(`fatal: ${message}`);
  process.stdout.write(`${JSON.stringify({ ok: false, fatal: message, failures: [message] })}\n`);
  process.exit(2);
}

main();
