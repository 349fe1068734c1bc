// Types of Shoal's browser player API, served at /shoal.d.ts next to /shoal.js.
//
//   import Shoal from "https://HOST/shoal.js";
//   const player = await Shoal.play(document.querySelector("video"), { channel: "demo" });
//   player.on("stats", (s) => console.log(s.offload, s.playbackDelay));
//   player.destroy();

/** Options of {@link play}. */
export interface PlayOptions {
  /** The channel to watch. */
  channel: string;
  /** The Shoal server's base URL, e.g. "https://live.example.org". Default: where shoal.js came from. */
  server?: string;
  /** Seconds behind the live edge to hold playback at. Default 1.5. */
  targetDelay?: number;
  /** Upload cap in bits per second (this viewer relays at most this much to others). Default: none. */
  uploadLimit?: number;
  /** Watch without relaying anything to other viewers (same as uploadLimit: 0). */
  consumeOnly?: boolean;
  /** Never use WebRTC: fetch every chunk from the server over HTTP. Chosen automatically
   *  when the browser has no RTCPeerConnection. */
  httpOnly?: boolean;
  /** Start muted (browsers only autoplay muted video). Default true. */
  muted?: boolean;
}

/** What the player is doing. */
export type PlayerState =
  | "connecting" // joining the channel, waiting for the first chunk
  | "offline" // the channel exists but nothing is being broadcast; retrying
  | "playing"
  | "stalled" // the video ran dry; waiting for data
  | "reconnecting" // lost the server; retrying with backoff
  | "destroyed";

/** Codes of {@link ShoalError}. */
export type ErrorCode =
  | "bad_options" // play() rejects: missing channel, bad server URL
  | "not_found" // play() rejects: no such channel on the server
  | "unsupported" // play() rejects: no Media Source Extensions, or the codec is not playable
  | "unreachable" // play() rejects: the server did not answer
  | "offline" // event: the channel stopped broadcasting (not fatal; the player waits)
  | "server_lost" // event: signaling or HTTP to the server failed (not fatal; it retries)
  | "no_webrtc" // event: WebRTC is unavailable; playing over HTTP only (not fatal)
  | "media" // event: the browser's decoder failed (fatal)
  | "internal"; // event: anything else (fatal)

export interface ShoalError extends Error {
  code: ErrorCode;
  /** Whether the player gave up (it is destroyed after a fatal error). */
  fatal: boolean;
}

/** A snapshot of the player's counters. Byte counts are since play(); delays in seconds. */
export interface Stats {
  state: PlayerState;
  /** "p2p" (swarm with HTTP fallback) or "http" (HTTP only). */
  mode: "p2p" | "http";
  /** This viewer's id in the swarm (null before joining). */
  peerId: number | null;
  /** Neighbours with an open data channel (the origin seeder included). */
  peers: number;
  bytesFromPeers: number;
  bytesFromSeeder: number;
  bytesFromHttp: number;
  bytesToPeers: number;
  /** Share of this page's bytes that came from other viewers (not the seeder, not HTTP), 0..1. */
  offload: number;
  /** How far behind the broadcaster's live edge the video plays now. */
  playbackDelay: number | null;
  /** 95th percentile of recent chunks' delivery delay (complete and verified − published). */
  deliveryDelayP95: number | null;
  stalls: number;
  stallSeconds: number;
  chunksVerified: number;
  chunksRejected: number;
  /** Seconds from play() to the first frame. */
  startupSeconds: number | null;
  /** Newest chunk held. */
  latestSeq: number | null;
  /** Seconds of video buffered ahead of the playhead. */
  bufferSeconds: number;
  /** Upload cap in bits per second (null: none; 0: consume-only). */
  uploadLimit: number | null;
}

export interface PeerEvent {
  event: "connected" | "disconnected";
  peer: number;
  /** Whether this neighbour is the channel's origin seeder. */
  seeder: boolean;
}

export interface Player {
  readonly channel: string;
  /** The channel as the server's API describes it (GET /api/channels/{name}). */
  readonly info: Record<string, unknown>;
  readonly video: HTMLVideoElement;
  stats(): Stats;
  /** Subscribe; returns a function that unsubscribes. "stats" fires every second. */
  on(event: "stats", fn: (stats: Stats) => void): () => void;
  on(event: "error", fn: (error: ShoalError) => void): () => void;
  on(event: "peer", fn: (peer: PeerEvent) => void): () => void;
  on(event: "state", fn: (state: PlayerState) => void): () => void;
  off(event: string, fn: (arg: any) => void): void;
  /** Stops everything: sockets, connections, timers; detaches the video. */
  destroy(): void;
}

/** Starts playing a channel in a video element. Rejects with a {@link ShoalError}. */
export function play(video: HTMLVideoElement, options: PlayOptions): Promise<Player>;

export declare const version: string;

declare const Shoal: { play: typeof play; version: string };
export default Shoal;
