// <shoal-player>: Shoal's player as a custom element, served at /player.js.
//
//   <script type="module" src="https://HOST/player.js"></script>
//   <shoal-player channel="demo" stats></shoal-player>
//
// Attributes
//   channel        the channel to watch (required)
//   server         the Shoal server's base URL (default: the origin this file came from)
//   stats          show the stats overlay (the stats button and the `s` key toggle it)
//   target-delay   seconds behind the live edge to hold playback at
//   upload-limit   upload cap in bits per second; k, M and G suffixes ("2M")
//   consume-only   watch without relaying to other viewers
//   http-only      never use WebRTC: every chunk over HTTP from the server
// Properties: .player (the Player of /shoal.d.ts once play() resolved, else null), .video
// Events: shoal-ready (detail: the Player), shoal-error (detail: the ShoalError),
//         shoal-state (detail: the state)
// Methods: restart(), toggleStats([show]), shortcut(key)
// Keys (when focused): s stats, m mute, f fullscreen.
// It autoplays muted with an unmute button, and destroys its player when removed.

const ORIGIN = new URL(import.meta.url).origin;
const SHOAL_JS = new URL("./shoal.js", import.meta.url).href;
/** Up to this many seconds behind the live edge the badge still says LIVE. */
const LIVE_WITHIN = 5;
/** Seconds of history in the chart. */
const CHART_SECONDS = 60;
const PEERS_COLOUR = "#35c982";
const ORIGIN_COLOUR = "#f0a030";

const TEXT = {
  connecting: "Connecting…",
  offline: "This channel is offline — waiting for the broadcast",
  lost: "Lost the server — reconnecting",
  unreachable: "Cannot reach the Shoal server — retrying",
  unsupported:
    "This browser cannot play Shoal streams: it has no Media Source Extensions " +
    "(or cannot decode this stream). Try a recent Chrome, Edge, Firefox or Safari.",
  noWebrtc: "WebRTC is unavailable here: playing over HTTP only, without sharing with other viewers",
  media: "The browser could not decode this video",
  failed: "The player stopped",
  script: "Could not load the Shoal player script",
  noChannel: "No channel given: set the channel attribute",
};

const svg = (body) => `<svg viewBox="0 0 24 24" aria-hidden="true">${body}</svg>`;
const SPEAKER = '<path d="M3 9h4l5-4v14l-5-4H3z"/>';
const ICON = {
  muted: svg(`${SPEAKER}<path class="s" d="M16 9l6 6M22 9l-6 6"/>`),
  sound: svg(`${SPEAKER}<path class="s" d="M15.5 8.5a5 5 0 0 1 0 7M18.5 5.5a9 9 0 0 1 0 13"/>`),
  fullscreen: svg('<path class="s" d="M4 9V4h5M15 4h5v5M20 15v5h-5M9 20H4v-5"/>'),
  windowed: svg('<path class="s" d="M9 4v5H4M20 9h-5V4M15 20v-5h5M4 15h5v5"/>'),
  stats: svg('<path class="s w" d="M5 20v-8M12 20V5M19 20v-5"/>'),
  play: svg('<path d="M8 5v14l11-7z"/>'),
};

const STYLE = `
:host { display: block; position: relative; overflow: hidden; background: #000; color: #fff;
  aspect-ratio: 16 / 9; font: 13px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  -webkit-tap-highlight-color: transparent; outline: none; }
:host([hidden]) { display: none; }
:host(:focus-visible) { outline: 2px solid #5aa9ff; outline-offset: -2px; }
:host(:fullscreen) { width: 100%; height: 100%; aspect-ratio: auto; }
.root { position: absolute; inset: 0; container-type: size; }
.root.idle { cursor: none; }
video { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: contain;
  background: #000; display: block; }
button { font: inherit; color: inherit; background: rgba(18, 20, 24, .62); border: 0;
  border-radius: 6px; padding: 6px; cursor: pointer; display: inline-flex; align-items: center;
  gap: 6px; line-height: 1; }
button:hover { background: rgba(55, 60, 70, .85); }
button:focus-visible { outline: 2px solid #5aa9ff; outline-offset: 1px; }
button[hidden], [hidden] { display: none !important; }
svg { width: 20px; height: 20px; fill: currentColor; flex: none; }
svg .s { fill: none; stroke: currentColor; stroke-width: 2; stroke-linecap: round; stroke-linejoin: round; }
svg .w { stroke-width: 3; }
.top { position: absolute; top: 10px; left: 10px; display: flex; gap: 8px; align-items: center; }
.badge { font-weight: 700; font-size: 11px; letter-spacing: .08em; padding: 4px 7px;
  border-radius: 4px; background: rgba(90, 90, 96, .85); color: #e8e8e8; user-select: none; }
.badge.live { background: #e0242c; color: #fff; }
.badge.live::before { content: ""; display: inline-block; width: 6px; height: 6px;
  border-radius: 50%; background: #fff; margin-right: 5px; vertical-align: 1px; }
.unmute { padding: 4px 10px 4px 6px; font-size: 12px; }
.bar { position: absolute; right: 10px; bottom: 10px; display: flex; gap: 6px; transition: opacity .3s; }
.idle .bar { opacity: 0; pointer-events: none; }
.dead .mute, .dead .stats-btn { display: none; }
.stats-btn[aria-pressed="true"] { background: rgba(53, 201, 130, .45); }
.msg { position: absolute; inset: 0; display: flex; flex-direction: column; align-items: center;
  justify-content: center; gap: 10px; text-align: center; padding: 24px; pointer-events: none; }
.msg .text { margin: 0; font-size: clamp(14px, 2.2vw, 20px); max-width: 30em;
  background: rgba(0, 0, 0, .6); padding: 10px 16px; border-radius: 8px; }
.msg .text:empty { display: none; }
.msg .detail { margin: 0; font-size: 12px; opacity: .7; max-width: 40em; word-break: break-word; }
.msg .detail:empty { display: none; }
.msg button { pointer-events: auto; padding: 8px 14px; }
.spinner { width: 34px; height: 34px; border-radius: 50%; border: 3px solid rgba(255, 255, 255, .25);
  border-top-color: #fff; animation: spin .9s linear infinite; }
@keyframes spin { to { transform: rotate(360deg); } }
.bigplay { position: absolute; left: 50%; top: 50%; transform: translate(-50%, -50%);
  width: 68px; height: 68px; border-radius: 50%; justify-content: center; }
.bigplay svg { width: 34px; height: 34px; }
.notice { position: absolute; left: 10px; bottom: 10px; max-width: calc(100% - 150px);
  background: rgba(0, 0, 0, .72); padding: 6px 10px; border-radius: 6px; font-size: 12px; }
.stats { position: absolute; top: 10px; right: 10px; width: 260px; max-width: calc(100% - 20px);
  max-height: calc(100% - 64px); overflow: auto; box-sizing: border-box; padding: 10px 12px;
  background: rgba(10, 12, 16, .8); border-radius: 8px; font-size: 12px;
  font-variant-numeric: tabular-nums; }
.stats dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 12px; margin: 0; }
.stats dt { opacity: .7; }
.stats dd { margin: 0; text-align: right; white-space: nowrap; }
.stats dd.bad { color: #ff6b6b; font-weight: 600; }
.stats canvas { display: block; width: 100%; height: 60px; margin-top: 8px;
  background: rgba(255, 255, 255, .04); border-radius: 4px; }
@container (max-height: 340px) {
  .stats { padding: 6px 9px; font-size: 11px; line-height: 1.25; width: 230px; max-height: calc(100% - 56px); }
  .stats canvas { height: 34px; margin-top: 5px; }
}
.legend { display: flex; justify-content: space-between; gap: 8px; margin-top: 4px; font-size: 11px; }
.legend span::before { content: ""; display: inline-block; width: 8px; height: 8px; border-radius: 2px;
  margin-right: 4px; background: var(--c); }
`;

const TEMPLATE = `
<style>${STYLE}</style>
<div class="root">
  <div class="video"></div>
  <div class="msg" hidden>
    <div class="spinner" hidden></div>
    <p class="text"></p>
    <p class="detail"></p>
    <button class="retry" hidden>Try again</button>
  </div>
  <button class="bigplay" hidden title="Play" aria-label="Play">${ICON.play}</button>
  <div class="top">
    <span class="badge" title="">LIVE</span>
    <button class="unmute" title="Unmute (m)" aria-label="Unmute">${ICON.muted}<span>Unmute</span></button>
  </div>
  <div class="notice" hidden></div>
  <div class="stats" hidden part="stats">
    <dl></dl>
    <canvas aria-label="Bytes per second from peers and from the origin, last minute"></canvas>
    <div class="legend"><span class="lp" style="--c:${PEERS_COLOUR}">peers</span><span class="lo" style="--c:${ORIGIN_COLOUR}">origin</span></div>
  </div>
  <div class="bar">
    <button class="mute" title="Mute (m)" aria-label="Mute">${ICON.muted}</button>
    <button class="stats-btn" title="Stats (s)" aria-label="Stats" aria-pressed="false">${ICON.stats}</button>
    <button class="fs" title="Fullscreen (f)" aria-label="Fullscreen">${ICON.fullscreen}</button>
  </div>
</div>`;

/** Rows of the stats overlay: [label, (stats) => text, (stats) => is it bad?]. */
const ROWS = [
  ["Peers", (s) => (s.mode === "http" ? `${s.peers} (HTTP only)` : `${s.peers}`)],
  ["P2P share", (s) => pct(s.offload)],
  ["Behind live", (s) => secs(s.playbackDelay)],
  ["Delivery p95", (s) => secs(s.deliveryDelayP95)],
  ["Stalls", (s) => `${s.stalls ?? 0} (${(s.stallSeconds ?? 0).toFixed(1)} s)`],
  ["Chunks", (s) => `${s.chunksVerified ?? 0} ok · ${s.chunksRejected ?? 0} bad`, (s) => s.chunksRejected > 0],
  ["Down", (s) => `${bytes(down(s))} (${bytes(s.bytesFromPeers)} P2P)`],
  ["Up", (s) => bytes(s.bytesToPeers)],
  ["Startup", (s) => secs(s.startupSeconds)],
];

const down = (s) => (s.bytesFromPeers || 0) + (s.bytesFromSeeder || 0) + (s.bytesFromHttp || 0);
const pct = (x) => (x == null || !isFinite(x) ? "—" : `${Math.round(x * 100)} %`);
const secs = (x) => (x == null || !isFinite(x) ? "—" : `${x < 10 ? x.toFixed(2) : x.toFixed(1)} s`);
function bytes(n) {
  n = n || 0;
  if (n < 1e3) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}
function bits(n) {
  if (n < 1e3) return `${Math.round(n)} bit/s`;
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 1 : 0)} kbit/s`;
  return `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} Mbit/s`;
}
/** "2M", "500k", "1.5G" or a plain number of bits per second; undefined if malformed. */
function rate(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)\s*$/i.exec(text || "");
  if (!m) return undefined;
  return Math.round(Number(m[1]) * { "": 1, k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase()]);
}
const flag = (el, name) => el.hasAttribute(name) && el.getAttribute(name) !== "false";

export class ShoalPlayer extends HTMLElement {
  static observedAttributes = ["channel", "server", "stats", "target-delay", "upload-limit", "consume-only", "http-only"];

  #root;
  #ui = {};
  #player = null;
  #video = null;
  #state = "connecting";
  #generation = 0;
  #unsubscribe = [];
  #timers = new Set();
  #retryDelay = 2000;
  #idleTimer = 0;
  #restartQueued = false;
  #connected = false;
  #lastStats = null;
  #lastSample = null;
  #samples = [];
  #onFullscreen = () => this.#fullscreenChanged();

  constructor() {
    super();
    this.#root = this.attachShadow({ mode: "open" });
    this.#root.innerHTML = TEMPLATE;
    const $ = (sel) => this.#root.querySelector(sel);
    const ui = this.#ui;
    for (const name of ["root", "video", "msg", "spinner", "text", "detail", "retry", "bigplay", "badge", "unmute", "notice", "stats", "canvas", "lp", "lo", "mute", "stats-btn", "fs"]) {
      ui[name] = $(name === "canvas" ? "canvas" : `.${name}`);
    }
    ui.dl = $("dl");
    ui.rows = ROWS.map(([label]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = label;
      dd.textContent = "—";
      ui.dl.append(dt, dd);
      return dd;
    });
    ui.retry.onclick = () => this.restart();
    ui.bigplay.onclick = () => this.#video?.play().catch(() => {});
    ui.unmute.onclick = () => this.#toggleMute();
    ui.mute.onclick = () => this.#toggleMute();
    ui["stats-btn"].onclick = () => this.toggleStats();
    ui.fs.onclick = () => this.#toggleFullscreen();
    this.addEventListener("keydown", (e) => this.#onKey(e));
    for (const type of ["pointermove", "pointerdown", "keydown"]) {
      this.addEventListener(type, () => this.#wake(), { passive: true });
    }
    this.addEventListener("pointerleave", () => this.#sleep(0));
  }

  /** The Player (see /shoal.d.ts) once playback started, else null. */
  get player() {
    return this.#player;
  }

  /** The <video> element in use. */
  get video() {
    return this.#video;
  }

  connectedCallback() {
    this.#connected = true;
    if (!this.hasAttribute("tabindex")) this.tabIndex = 0;
    this.#showStats(this.hasAttribute("stats"));
    document.addEventListener("fullscreenchange", this.#onFullscreen);
    this.#fullscreenChanged();
    this.#start();
  }

  disconnectedCallback() {
    this.#connected = false;
    document.removeEventListener("fullscreenchange", this.#onFullscreen);
    this.#stop();
  }

  attributeChangedCallback(name, old, value) {
    if (old === value) return;
    if (name === "stats") {
      this.#showStats(value !== null);
    } else if (this.#connected && !this.#restartQueued) {
      this.#restartQueued = true;
      queueMicrotask(() => {
        this.#restartQueued = false;
        if (this.#connected) this.restart();
      });
    }
  }

  /** Destroys the player and starts again. */
  restart() {
    this.#stop();
    this.#start();
  }

  /** Shows or hides the stats overlay (reflected in the `stats` attribute). */
  toggleStats(show = !this.hasAttribute("stats")) {
    this.toggleAttribute("stats", show);
  }

  async #start() {
    const generation = ++this.#generation;
    const current = () => generation === this.#generation && this.isConnected;
    this.#samples = [];
    this.#lastSample = null;
    this.#lastStats = null;
    this.#showStats(this.hasAttribute("stats"));
    const video = document.createElement("video");
    video.playsInline = true;
    video.muted = true;
    video.autoplay = true;
    video.setAttribute("playsinline", "");
    video.setAttribute("part", "video");
    video.addEventListener("volumechange", () => this.#mutedChanged());
    video.addEventListener("pause", () => this.#checkPaused());
    video.addEventListener("playing", () => this.#checkPaused());
    this.#ui.video.replaceChildren(video);
    this.#video = video;
    this.#mutedChanged();

    const channel = (this.getAttribute("channel") || "").trim();
    if (!channel) {
      this.#setState("destroyed");
      this.#message(TEXT.noChannel);
      return;
    }
    this.#setState("connecting");
    if (!("MediaSource" in window) && !("ManagedMediaSource" in window)) {
      this.#fail({ code: "unsupported", message: "window.MediaSource is missing", fatal: true });
      return;
    }

    let Shoal;
    try {
      Shoal = (await import(SHOAL_JS)).default;
    } catch (e) {
      if (!current()) return;
      this.#fail({ code: "internal", message: `${SHOAL_JS}: ${e.message || e}`, fatal: true }, TEXT.script);
      return;
    }
    if (!current()) return;

    const options = { channel, server: this.getAttribute("server") || ORIGIN, muted: true };
    const delay = parseFloat(this.getAttribute("target-delay"));
    if (isFinite(delay)) options.targetDelay = delay;
    if (this.hasAttribute("upload-limit")) {
      const limit = rate(this.getAttribute("upload-limit"));
      if (limit === undefined) console.warn("shoal-player: ignoring upload-limit", this.getAttribute("upload-limit"));
      else options.uploadLimit = limit;
    }
    if (flag(this, "consume-only")) options.consumeOnly = true;
    if (flag(this, "http-only")) options.httpOnly = true;

    let player;
    try {
      player = await Shoal.play(video, options);
    } catch (error) {
      if (current()) this.#fail(error);
      return;
    }
    if (!current()) {
      player.destroy();
      return;
    }
    this.#player = player;
    this.#retryDelay = 2000;
    this.#unsubscribe = [
      player.on("stats", (s) => this.#onStats(s)),
      player.on("state", (s) => this.#setState(s)),
      player.on("error", (e) => this.#onError(e)),
    ];
    try {
      const stats = player.stats();
      this.#setState(stats.state);
      this.#onStats(stats);
    } catch (e) {
      console.warn("shoal-player: stats()", e);
    }
    this.dispatchEvent(new CustomEvent("shoal-ready", { detail: player, bubbles: true, composed: true }));
  }

  #stop() {
    this.#generation++;
    for (const off of this.#unsubscribe) {
      try {
        off();
      } catch {
        // a half-built player may not unsubscribe cleanly; it is destroyed next
      }
    }
    this.#unsubscribe = [];
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    clearTimeout(this.#idleTimer);
    const player = this.#player;
    this.#player = null;
    if (player) {
      try {
        player.destroy();
      } catch (e) {
        console.warn("shoal-player: destroy()", e);
      }
    }
  }

  #later(ms, fn) {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
  }

  /** play() rejected, or a fatal error: say why; retry what may get better by itself. */
  #fail(error, text = TEXT.failed) {
    const code = error?.code || "internal";
    this.#emitError(error);
    const detail = error?.message || String(error);
    this.#setState(code === "offline" ? "offline" : "destroyed");
    switch (code) {
      case "not_found": {
        const channel = this.getAttribute("channel");
        this.#message(`There is no channel “${channel}” on this server`, { retry: true });
        break;
      }
      case "unsupported":
        this.#message(TEXT.unsupported, { detail });
        break;
      case "unreachable":
      case "server_lost":
      case "offline": {
        const text = code === "offline" ? TEXT.offline : TEXT.unreachable;
        this.#message(text, { spinner: true, detail: code === "offline" ? "" : detail });
        const wait = this.#retryDelay;
        this.#retryDelay = Math.min(wait * 2, 30000);
        const generation = this.#generation;
        this.#later(wait, () => generation === this.#generation && this.restart());
        break;
      }
      case "media":
        this.#message(TEXT.media, { detail, retry: true });
        break;
      default:
        this.#message(text, { detail, retry: true });
    }
  }

  #onError(error) {
    const code = error?.code;
    if (error?.fatal) {
      // The player gave up (destroy() is harmless twice): say why and offer a retry.
      this.#stop();
      this.#fail(error);
      return;
    }
    this.#emitError(error);
    if (code === "no_webrtc") {
      this.#notice(TEXT.noWebrtc, 12000);
    } else if (code === "server_lost") {
      if (this.#state === "playing") this.#notice(TEXT.lost, 6000);
      else this.#message(TEXT.lost, { spinner: true });
    } else if (code === "offline") {
      if (this.#state !== "playing") this.#message(TEXT.offline);
    }
  }

  #emitError(error) {
    this.dispatchEvent(new CustomEvent("shoal-error", { detail: error, bubbles: true, composed: true }));
  }

  #setState(state) {
    if (!state) return;
    const changed = state !== this.#state;
    this.#state = state;
    switch (state) {
      case "connecting":
        this.#message(TEXT.connecting, { spinner: true });
        break;
      case "offline":
        this.#message(TEXT.offline);
        break;
      case "reconnecting":
        this.#message(TEXT.lost, { spinner: true });
        this.#ui.notice.hidden = true; // the message says it already
        break;
      case "stalled":
        this.#message("", { spinner: true });
        break;
      case "playing":
        this.#message(null);
        this.#sleep(3000);
        break;
    }
    this.#updateBadge();
    this.#checkPaused();
    if (changed) {
      this.dispatchEvent(new CustomEvent("shoal-state", { detail: state, bubbles: true, composed: true }));
    }
  }

  /** Centred message; null hides it. */
  #message(text, { spinner = false, detail = "", retry = false } = {}) {
    const ui = this.#ui;
    ui.msg.hidden = text === null;
    ui.text.textContent = text || "";
    ui.detail.textContent = detail;
    ui.spinner.hidden = !spinner;
    ui.retry.hidden = !retry;
  }

  #notice(text, ms) {
    this.#ui.notice.textContent = text;
    this.#ui.notice.hidden = false;
    clearTimeout(this.#ui.noticeTimer);
    this.#ui.noticeTimer = setTimeout(() => (this.#ui.notice.hidden = true), ms);
  }

  #updateBadge() {
    const badge = this.#ui.badge;
    const delay = this.#lastStats?.playbackDelay;
    const playing = this.#state === "playing";
    const live = playing && (delay == null || delay < LIVE_WITHIN);
    badge.classList.toggle("live", live);
    badge.textContent = this.#state === "offline" ? "OFFLINE" : playing && !live ? "BEHIND" : "LIVE";
    badge.title = delay == null ? "" : `${delay.toFixed(1)} s behind live`;
    badge.hidden = this.#state === "destroyed";
    this.#ui.root.classList.toggle("dead", this.#state === "destroyed");
    this.#mutedChanged();
  }

  #checkPaused() {
    const v = this.#video;
    this.#ui.bigplay.hidden = !(v && v.paused && this.#state === "playing" && v.readyState >= 2);
  }

  #onStats(s) {
    if (!s) return;
    const first = !this.#lastStats;
    this.#lastStats = s;
    if (first) this.#showStats(this.hasAttribute("stats"));
    if (s.state && s.state !== this.#state) this.#setState(s.state);
    this.#updateBadge();
    this.#checkPaused();
    // Bits per second from peers and from the origin (seeder + HTTP) since the last sample.
    const now = performance.now();
    const fromPeers = s.bytesFromPeers || 0;
    const fromOrigin = (s.bytesFromSeeder || 0) + (s.bytesFromHttp || 0);
    const last = this.#lastSample;
    if (last && now - last.t >= 200) {
      const dt = (now - last.t) / 1000;
      this.#samples.push({
        t: now,
        peers: (Math.max(0, fromPeers - last.peers) * 8) / dt,
        origin: (Math.max(0, fromOrigin - last.origin) * 8) / dt,
      });
      while (this.#samples.length && now - this.#samples[0].t > CHART_SECONDS * 1000 + 2000) this.#samples.shift();
    }
    if (!last || now - last.t >= 200) this.#lastSample = { t: now, peers: fromPeers, origin: fromOrigin };
    if (!this.#ui.stats.hidden) this.#renderStats(s);
  }

  #renderStats(s) {
    ROWS.forEach(([, text, bad], i) => {
      const dd = this.#ui.rows[i];
      dd.textContent = s ? text(s) : "—";
      dd.classList.toggle("bad", !!(s && bad && bad(s)));
    });
    const latest = this.#samples[this.#samples.length - 1];
    this.#ui.lp.textContent = `peers ${latest ? bits(latest.peers) : "—"}`;
    this.#ui.lo.textContent = `origin ${latest ? bits(latest.origin) : "—"}`;
    this.#drawChart();
  }

  #drawChart() {
    const canvas = this.#ui.canvas;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const samples = this.#samples;
    if (!samples.length) return;
    const now = samples[samples.length - 1].t;
    const max = Math.max(8000, ...samples.map((p) => Math.max(p.peers, p.origin))) * 1.15;
    const x = (t) => w - ((now - t) / (CHART_SECONDS * 1000)) * w;
    const y = (v) => h - 1 - (v / max) * (h - 2);
    g.fillStyle = "rgba(255,255,255,.45)";
    g.font = "10px system-ui, sans-serif";
    g.textBaseline = "top";
    g.fillText(bits(max / 1.15), 4, 3);
    for (const [key, colour] of [["origin", ORIGIN_COLOUR], ["peers", PEERS_COLOUR]]) {
      g.beginPath();
      samples.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p[key])) : g.moveTo(x(p.t), y(p[key]))));
      g.strokeStyle = colour;
      g.lineWidth = 1.5;
      g.stroke();
      g.lineTo(x(now), h);
      g.lineTo(x(samples[0].t), h);
      g.closePath();
      g.globalAlpha = 0.18;
      g.fillStyle = colour;
      g.fill();
      g.globalAlpha = 1;
    }
  }

  #showStats(show) {
    // Nothing to show before the first stats (or after play() failed): the message says why.
    this.#ui.stats.hidden = !show || !this.#lastStats;
    this.#ui["stats-btn"].setAttribute("aria-pressed", String(show));
    if (show) this.#renderStats(this.#lastStats);
  }

  #toggleMute() {
    const v = this.#video;
    if (!v) return;
    v.muted = !v.muted;
    if (!v.muted) v.play().catch(() => {});
  }

  #mutedChanged() {
    const muted = !this.#video || this.#video.muted;
    this.#ui.unmute.hidden = !muted || this.#state === "destroyed";
    this.#ui.mute.innerHTML = muted ? ICON.muted : ICON.sound;
    this.#ui.mute.title = muted ? "Unmute (m)" : "Mute (m)";
    this.#ui.mute.setAttribute("aria-label", muted ? "Unmute" : "Mute");
  }

  #toggleFullscreen() {
    if (document.fullscreenElement) {
      document.exitFullscreen().catch(() => {});
    } else if (this.requestFullscreen && document.fullscreenEnabled) {
      this.requestFullscreen().catch(() => {});
    } else if (this.#video?.webkitEnterFullscreen) {
      this.#video.webkitEnterFullscreen(); // iPhone: only the video itself goes fullscreen
    }
  }

  #fullscreenChanged() {
    const full = document.fullscreenElement === this;
    const fs = this.#ui.fs;
    fs.innerHTML = full ? ICON.windowed : ICON.fullscreen;
    fs.title = full ? "Exit fullscreen (f)" : "Fullscreen (f)";
    fs.hidden = !document.fullscreenEnabled && !(this.#video && this.#video.webkitEnterFullscreen);
  }

  #onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    if (this.shortcut(e.key)) e.preventDefault();
  }

  /** Acts on a keyboard shortcut (s, m, f); whether `key` is one. Pages call it for keys
   *  pressed outside the element. */
  shortcut(key) {
    const action = { s: () => this.toggleStats(), m: () => this.#toggleMute(), f: () => this.#toggleFullscreen() }[(key || "").toLowerCase()];
    action?.();
    return !!action;
  }

  /** Controls show on activity and hide after a few idle seconds while playing. */
  #wake() {
    this.#ui.root.classList.remove("idle");
    this.#sleep(3000);
  }

  #sleep(ms) {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => {
      const hovering = this.#ui.root.querySelector(".bar:hover");
      if (this.#state === "playing" && !hovering) this.#ui.root.classList.add("idle");
    }, ms);
  }
}

if (!customElements.get("shoal-player")) customElements.define("shoal-player", ShoalPlayer);
export default ShoalPlayer;
