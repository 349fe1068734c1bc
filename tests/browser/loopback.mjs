#!/usr/bin/env node
// Checks that this machine's headless Chromium can do what the Shoal player needs, without
// Shoal: two pages on a local origin connect an RTCDataChannel over loopback (no ICE servers)
// and exchange a message, and MediaSource accepts the demo's codec. Prints one JSON line;
// exit code 0 when all of it works. Use it to tell a browser/set-up problem from a player bug:
//   node tests/browser/loopback.mjs
import http from "node:http";
import { launch, DEFAULT_CHROMIUM } from "./chromium.mjs";

const PAGE = `<!doctype html><meta charset="utf-8"><title>loopback</title><script>
window.makePc = async (name) => {
  const pc = new RTCPeerConnection({ iceServers: [] });
  const candidates = [];
  pc.onicecandidate = (e) => e.candidate && candidates.push(e.candidate.candidate);
  window[name] = { pc, candidates };
};
window.offer = async () => {
  const { pc } = window.a;
  window.a.dc = pc.createDataChannel("x");
  window.a.opened = new Promise((r) => (window.a.dc.onopen = r));
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => pc.iceGatheringState === "complete" ? r() : pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && r()));
  return pc.localDescription.toJSON();
};
window.answer = async (offer) => {
  const { pc } = window.b;
  window.b.got = new Promise((r) => (pc.ondatachannel = (e) => (e.channel.onmessage = (m) => r(m.data))));
  await pc.setRemoteDescription(offer);
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((r) => pc.iceGatheringState === "complete" ? r() : pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && r()));
  return pc.localDescription.toJSON();
};
</script>`;

const server = http.createServer((req, res) => {
  res.writeHead(req.url === "/" ? 200 : 404, { "content-type": "text/html" });
  res.end(req.url === "/" ? PAGE : "");
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${server.address().port}`;
const result = { chromium: DEFAULT_CHROMIUM, ok: false };
let browser;
try {
  const t0 = Date.now();
  browser = await launch({ origins: [origin] });
  result.version = browser.context.browser()?.version() ?? null;
  const [a, b] = [await browser.context.newPage(), await browser.context.newPage()];
  await a.goto(origin);
  await b.goto(origin);
  await a.evaluate(() => window.makePc("a"));
  await b.evaluate(() => window.makePc("b"));
  const t1 = Date.now();
  const offer = await a.evaluate(() => window.offer());
  const answer = await b.evaluate((o) => window.answer(o), offer);
  await a.evaluate(async (ans) => {
    await window.a.pc.setRemoteDescription(ans);
    await window.a.opened;
    window.a.dc.send("hello over loopback");
  }, answer);
  result.message = await b.evaluate(() => window.b.got);
  result.connect_ms = Date.now() - t1;
  result.candidates = await a.evaluate(() => window.a.candidates);
  result.mse_avc_aac = await a.evaluate(() =>
    typeof MediaSource !== "undefined" && MediaSource.isTypeSupported('video/mp4; codecs="avc1.42c01e,mp4a.40.2"'));
  result.total_ms = Date.now() - t0;
  result.ok = result.message === "hello over loopback" && result.mse_avc_aac === true;
} catch (e) {
  result.error = String(e && e.message ? e.message : e);
} finally {
  if (browser) await browser.close();
  server.close();
}
console.error(`loopback: ${result.ok ? "ok" : "FAILED"}`);
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
