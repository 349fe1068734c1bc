// Shoal's browser player API (types: /shoal.d.ts).
//
//   import Shoal from "https://HOST/shoal.js";
//   const player = await Shoal.play(videoElement, { channel: "demo" });
//   player.on("stats", (s) => console.log(s.offload, s.playbackDelay));
//   player.destroy();
//
// The work is done by the WebAssembly client (/assets/shoal_client_bg.wasm, built from the
// wasm-client crate): signaling, WebRTC data channels, chunk verification, the swarm and
// Media Source Extensions. This module checks the browser, reads the channel's description
// from the server's API and hands everything to it.

import init, { Client } from "./assets/shoal_client.js";

export const version = "0.1.0";

const DEFAULT_SERVER = new URL(import.meta.url).origin;
const OFFLINE_POLL_MS = 2000;
const INFO_POLL_MS = 5000;

let ready = null;
function loadClient() {
  if (!ready) {
    ready = init({ module_or_path: new URL("./assets/shoal_client_bg.wasm", import.meta.url) });
    ready.catch(() => (ready = null));
  }
  return ready;
}

function shoalError(code, message, fatal = true) {
  const e = new Error(message);
  e.name = "ShoalError";
  e.code = code;
  e.fatal = fatal;
  return e;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function channelInfo(server, channel) {
  let resp;
  try {
    resp = await fetch(`${server}/api/channels/${encodeURIComponent(channel)}`, { cache: "no-store" });
  } catch (e) {
    throw shoalError("unreachable", `The Shoal server at ${server} did not answer (${e.message})`);
  }
  if (resp.status === 404) throw shoalError("not_found", `There is no channel "${channel}" on ${server}`);
  if (!resp.ok) throw shoalError("unreachable", `The Shoal server answered HTTP ${resp.status}`);
  return resp.json();
}

class Player {
  #client = null;
  #listeners = new Map();
  #destroyed = false;
  #lastStats = null;
  #state = "connecting";
  #infoTimer = null;
  #options = null;
  #recoveries = [];
  #carried = null;

  constructor(video, channel, server, info) {
    this.video = video;
    this.channel = channel;
    this.server = server;
    this.info = info;
  }

  on(event, fn) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this.#listeners.get(event)?.delete(fn);
  }

  // Listeners run asynchronously, never inside the client's own call stack.
  _emit(event, arg) {
    const fns = this.#listeners.get(event);
    if (!fns || fns.size === 0) return;
    queueMicrotask(() => {
      for (const fn of [...fns]) {
        try {
          fn(arg);
        } catch (e) {
          console.error("shoal: listener for", event, "threw", e);
        }
      }
    });
  }

  _setState(state) {
    if (this.#state === state) return;
    this.#state = state;
    this._emit("state", state);
  }

  stats() {
    if (this.#client && !this.#destroyed) {
      const s = this.#merge(JSON.parse(this.#client.stats()));
      if (s) {
        if (this.#state === "offline" && s.state !== "playing") s.state = "offline";
        this.#lastStats = s;
      }
    }
    const s = this.#lastStats ?? emptyStats(this.#state);
    if (this.#destroyed) s.state = "destroyed";
    return s;
  }

  _start(options) {
    this.#options = options;
    const onEvent = (kind, json) => {
      const arg = JSON.parse(json);
      if (kind === "state") {
        if (this.#state === "offline" && arg !== "playing") return;
        this.#state = arg;
        this._emit("state", arg);
      } else if (kind === "error") {
        if (arg.code === "media" && this.#mayRecover()) {
          // The decoder failed: most often the broadcaster changed encoding and the new
          // chunks need the new init segment. Start again from the channel's description.
          this._emit("error", shoalError("media", `${arg.message} (restarting playback)`, false));
          channelInfo(this.server, this.channel)
            .then((info) => {
              this.info = info;
              this.#restart(info);
            })
            .catch((e) => {
              this._emit("error", e.code ? e : shoalError("internal", String(e)));
              this.destroy();
            });
          return;
        }
        const e = shoalError(arg.code, arg.message, arg.fatal);
        this._emit("error", e);
        if (arg.fatal) this.destroy();
      } else if (kind === "stats") {
        this.#merge(arg);
        if (this.#state === "offline" && arg.state !== "playing") arg.state = "offline";
        this.#lastStats = arg;
        this._emit("stats", arg);
      } else {
        this._emit(kind, arg);
      }
    };
    this.#client = new Client(this.video, JSON.stringify(options), onEvent);
    if (!this.#infoTimer) this.#watchInfo();
  }

  // Counters of clients this player replaced add to the current one's.
  #merge(s) {
    const c = this.#carried;
    if (!s || !c) return s;
    for (const k of ADDITIVE) s[k] += c[k];
    const got = s.bytesFromPeers + s.bytesFromSeeder + s.bytesFromHttp;
    s.offload = got > 0 ? s.bytesFromPeers / got : 0;
    s.startupSeconds = c.startupSeconds ?? s.startupSeconds;
    return s;
  }

  // At most 3 automatic restarts a minute; past that a media error is fatal.
  #mayRecover() {
    const now = performance.now();
    this.#recoveries = this.#recoveries.filter((t) => now - t < 60_000);
    if (this.#recoveries.length >= 3) return false;
    this.#recoveries.push(now);
    return true;
  }

  // The broadcaster changed encoding (a new init segment, maybe a new codec): start a fresh
  // client on the new description. Counters start over with it.
  #restart(info) {
    if (!this.#client || this.#destroyed) return;
    if (!MediaSource.isTypeSupported(info.mime)) {
      this._emit("error", shoalError("unsupported", `This browser cannot decode the new stream (${info.mime})`));
      this.destroy();
      return;
    }
    const last = this.stats();
    this.#carried = Object.fromEntries(ADDITIVE.map((k) => [k, last[k]]));
    this.#carried.startupSeconds = last.startupSeconds;
    this.#client.destroy();
    this.#client.free();
    this.#client = null;
    this._start({ ...this.#options, ...describe(info, this.server), startedAt: performance.now() });
  }

  // Keeps `info` fresh and notices a broadcast that stops or comes back.
  #watchInfo() {
    this.#infoTimer = setInterval(async () => {
      try {
        const info = await channelInfo(this.server, this.channel);
        const changed = info.init_id && this.info.init_id && info.init_id !== this.info.init_id;
        this.info = info;
        if (changed && info.live && info.mime) this.#restart(info);
        if (!info.live && this.#state !== "offline") {
          this._setState("offline");
          this._emit("error", shoalError("offline", `Channel "${this.channel}" is offline`, false));
        } else if (info.live && this.#state === "offline") {
          this.#state = this.#lastStats?.state ?? "connecting";
          this._emit("state", this.#state);
        }
      } catch (_) {
        // The client reports a lost server itself.
      }
    }, INFO_POLL_MS);
  }

  destroy() {
    if (this.#destroyed) return;
    this.#destroyed = true;
    clearInterval(this.#infoTimer);
    if (this.#client) {
      this.#lastStats = this.stats();
      this.#client.destroy();
      this.#client.free();
      this.#client = null;
    }
    this._setState("destroyed");
  }

  get destroyed() {
    return this.#destroyed;
  }
}

const ADDITIVE = [
  "bytesFromPeers", "bytesFromSeeder", "bytesFromHttp", "bytesToPeers",
  "stalls", "stallSeconds", "chunksVerified", "chunksRejected",
];

function emptyStats(state) {
  return {
    state, mode: "p2p", peerId: null, peers: 0,
    bytesFromPeers: 0, bytesFromSeeder: 0, bytesFromHttp: 0, bytesToPeers: 0, offload: 0,
    playbackDelay: null, deliveryDelayP95: null, stalls: 0, stallSeconds: 0,
    chunksVerified: 0, chunksRejected: 0, startupSeconds: null, latestSeq: null,
    bufferSeconds: 0, uploadLimit: null,
  };
}

// What the client needs of the channel's API description.
function describe(info, server) {
  return {
    publicKey: info.public_key,
    mime: info.mime,
    initUrl: new URL(info.init_url, server).href,
    chunkUrlTemplate: new URL(info.chunk_url_template, server).href.replace("%7Bseq%7D", "{seq}"),
    latestKeyframeSeq: info.latest_keyframe_seq ?? null,
    bitrateBps: info.bitrate_bps ?? null,
  };
}

export async function play(video, options = {}) {
  const startedAt = performance.now();
  if (!(video instanceof HTMLVideoElement)) throw shoalError("bad_options", "play() needs a <video> element");
  const channel = options.channel;
  if (typeof channel !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(channel)) {
    throw shoalError("bad_options", `Bad channel name: ${JSON.stringify(channel)}`);
  }
  let server;
  try {
    server = new URL(options.server ?? DEFAULT_SERVER).origin;
  } catch (_) {
    throw shoalError("bad_options", `Bad server URL: ${options.server}`);
  }
  if (!("MediaSource" in window)) {
    throw shoalError("unsupported", "This browser cannot play live video here (no Media Source Extensions)");
  }
  const [info] = await Promise.all([channelInfo(server, channel), loadClient()]);
  const player = new Player(video, channel, server, info);
  video.muted = options.muted ?? true;
  video.playsInline = true;

  // An offline channel (or one that has not sent its first chunk) has no codec yet: wait.
  const waitForLive = async () => {
    let current = info;
    while (!current.live || !current.mime) {
      player._setState("offline");
      await sleep(OFFLINE_POLL_MS);
      if (player.destroyed) return null;
      try {
        current = await channelInfo(server, channel);
      } catch (e) {
        if (e.code === "not_found") throw e;
      }
    }
    player.info = current;
    return current;
  };
  const begin = (live) => {
    if (!MediaSource.isTypeSupported(live.mime)) {
      throw shoalError("unsupported", `This browser cannot decode this channel's video (${live.mime})`);
    }
    player._setState("connecting");
    player._start({
      server,
      channel,
      ...describe(live, server),
      targetDelay: options.targetDelay ?? null,
      uploadLimit: options.consumeOnly ? 0 : options.uploadLimit ?? null,
      consumeOnly: !!options.consumeOnly,
      httpOnly: !!options.httpOnly,
      startedAt,
    });
  };
  if (info.live && info.mime) {
    begin(info);
  } else {
    waitForLive()
      .then((live) => live && !player.destroyed && begin(live))
      .catch((e) => {
        player._emit("error", e.code ? e : shoalError("internal", String(e)));
        player.destroy();
      });
  }
  return player;
}

const Shoal = { play, version };
export default Shoal;
if (typeof window !== "undefined" && !window.Shoal) window.Shoal = Shoal;
