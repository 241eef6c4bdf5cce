// The StreamAVS viewer page: one WebSocket to the viewer server, the newest view drawn on a canvas
// (the JPEG preview frame with its mask tinted over it), the sounding plot and the stream's counters.
// Views are latest-only here too: while one is being decoded, newer ones replace the waiting one.
// window.streamavsViewer exposes the page's state for debugging and for the browser test.

import { decodeMask } from "./decode.js";
import { drawPlot } from "./plot.js";

const MASK_RGBA = [255, 40, 40, 128]; // the red tint of `streamavs run --show`, half transparent
const STATE_TEXT = {
  connecting: () => "connecting to the viewer server",
  disconnected: () => "viewer server not reachable (reconnecting)",
  waiting: (s) => `waiting for the publisher at ${s.address}`,
  unreachable: (s) => `publisher not reachable at ${s.address}` +
    (s.silence_s != null ? ` (nothing for ${Math.round(s.silence_s)} s)` : "") + ": is `streamavs run` running?",
  restarted: (s) => `publisher restarted (session ${s.session})`,
  no_masks: () => "publisher alive, no masks yet",
  no_frames: () => "no frames (start run with --preview-fps)",
  live: () => "live",
};

const $ = (id) => document.getElementById(id);
const video = $("video"), plot = $("plot");
const overlay = document.createElement("canvas"); // the mask at its own size, scaled onto the video

const page = {
  state: "connecting", status: null, points: [], session: null, historyS: 30, maxPoints: 20000, // until the hello
  pending: null, busy: false, paused: false, shown: null,
  received: 0, drawn: 0, drawTimes: [], errors: 0, lastError: null,
};

function token() { return new URLSearchParams(location.search).get("token") || ""; }

function setState(state, status) {
  page.state = state;
  const el = $("state");
  el.dataset.state = state;
  el.textContent = (STATE_TEXT[state] || (() => state))(status || {});
  if (status && status.error) { el.dataset.state = "error"; el.textContent = `viewer error: ${status.error}`; }
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws?token=${encodeURIComponent(token())}`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onText(JSON.parse(ev.data)) : onView(ev.data));
  ws.onclose = () => { setState("disconnected"); setTimeout(connect, 1000); };
}

function onText(msg) {
  if (msg.type === "hello") { // a new socket resends the plot
    page.historyS = msg.history_s; page.maxPoints = msg.max_points; page.points = []; return;
  }
  if (msg.type !== "status") return;
  if (msg.session !== page.session) { page.points = []; page.session = msg.session; }
  for (const p of msg.points) page.points.push(p);
  // The window of the newest point, whatever order the times came in (a publisher's clock may step
  // back, one stamp may be far off), and never more points than the server keeps.
  const newest = page.points.length ? page.points[page.points.length - 1][0] : 0;
  page.points = page.points.filter((p) => p[0] <= newest && newest - p[0] <= page.historyS).slice(-page.maxPoints);
  page.status = msg;
  setState(msg.state, msg);
  showStats(msg);
  drawPlot(plot, page.points, page.historyS);
}

function showStats(s) {
  const lat = s.latency_ms || {};
  $("s-engine").textContent = s.engine ? `${s.engine.name} (${s.engine.sha256.slice(0, 8)}) on ${s.backend}` : "-";
  $("s-session").textContent = s.session || "-";
  $("s-rate").textContent = s.rate_hz != null ? `${s.rate_hz.toFixed(1)} /s (${s.masks} received)` : `${s.masks} received`;
  $("s-latency").textContent = lat.p50 != null ? `p50 ${lat.p50.toFixed(0)} ms, p90 ${lat.p90.toFixed(0)} ms (capture to viewer)` : "-";
  $("s-gaps").textContent = s.gaps != null ? `${s.gaps} / ${s.lost}` : "-";
  $("s-dropped").textContent = `${s.dropped} by the pipeline` +
    (s.stage_ms && s.stage_ms.inference != null ? `, inference ${s.stage_ms.inference.toFixed(1)} ms` : "");
  $("s-restarts").textContent = s.restarts != null ? `${s.restarts}, protocol errors ${s.protocol_errors}` : "-";
  $("s-frames").textContent = s.frames ? `${s.frames} previews received` : "none (start run with --preview-fps)";
  $("s-page").textContent = `${pageFps().toFixed(1)} views/s drawn, ${s.client.superseded} skipped (slow page), ` +
    `${s.clients} browser${s.clients === 1 ? "" : "s"}`;
}

function pageFps() {
  const now = performance.now();
  while (page.drawTimes.length && now - page.drawTimes[0] > 2000) page.drawTimes.shift();
  return page.drawTimes.length / 2;
}

// A view: [u32 LE header length][header JSON][jpeg][mask payload] (streamavs/viewer/hub.py pack_view).
function onView(buffer) {
  const n = new DataView(buffer).getUint32(0, true);
  const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
  const jpeg = new Uint8Array(buffer, 4 + n, head.jpeg);
  const payload = new Uint8Array(buffer, 4 + n + head.jpeg, head.mask_bytes);
  page.received += 1;
  page.pending = { head, jpeg, payload }; // latest-only: an undrawn older view is replaced
  if (!page.busy && !page.paused) drawPending();
}

async function drawPending() {
  page.busy = true;
  try {
    while (page.pending && !page.paused) {
      const { head, jpeg, payload } = page.pending;
      page.pending = null;
      const bitmap = head.frame ? await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" })) : null;
      const fg = head.mask ? await decodeMask(head.mask, payload) : null;
      if (page.paused) { if (bitmap) bitmap.close(); break; }
      compose(bitmap, head, fg);
      page.shown = { frame: head.frame, mask: head.mask, exact: head.exact };
      page.drawn += 1;
      page.drawTimes.push(performance.now());
      video.dataset.frameIndex = head.frame && head.frame.index != null ? head.frame.index : "";
      video.dataset.sounding = head.mask ? head.mask.sounding.toFixed(3) : "";
    }
  } catch (err) {
    page.errors += 1;
    page.lastError = String(err);
  } finally {
    page.busy = false;
  }
}

// Show the canvas as large as its box allows, whole (aspect kept, not taller than the window).
function fitVideo() {
  const wide = window.innerWidth >= 900; // the panel sits beside the video, else below it
  const box = Math.min(720, wide ? window.innerWidth - 560 : window.innerWidth - 32);
  const room = Math.max(120, window.innerHeight - video.getBoundingClientRect().top - 40);
  const scale = Math.min(box / video.width, room / video.height);
  video.style.width = `${Math.floor(video.width * scale)}px`;
  video.style.height = `${Math.floor(video.height * scale)}px`;
}

function compose(bitmap, head, fg) {
  const [fh, fw] = head.frame ? head.frame.shape : head.mask.shape;
  if (video.width !== fw || video.height !== fh) { video.width = fw; video.height = fh; fitVideo(); }
  const ctx = video.getContext("2d");
  if (bitmap) { ctx.drawImage(bitmap, 0, 0, fw, fh); bitmap.close(); }
  else { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, fw, fh); }
  if (!fg) return;
  const [mh, mw] = head.mask.shape;
  overlay.width = mw; overlay.height = mh;
  const octx = overlay.getContext("2d");
  const img = octx.createImageData(mw, mh);
  for (let i = 0; i < fg.length; i++) {
    if (fg[i]) img.data.set(MASK_RGBA, i * 4);
  }
  octx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(overlay, 0, 0, fw, fh);
}

function togglePause() {
  page.paused = !page.paused;
  $("pause-note").textContent = page.paused ? "paused." : "";
  $("pause-hint").textContent = page.paused ? "to resume" : "to pause";
  if (!page.paused && page.pending && !page.busy) drawPending();
}

video.addEventListener("click", togglePause);
window.addEventListener("resize", fitVideo);
document.addEventListener("keydown", (ev) => { if (ev.code === "Space") { ev.preventDefault(); togglePause(); } });

window.streamavsViewer = {
  // What the page shows and has received; `shown` is the view on the canvas.
  snapshot: () => ({
    state: page.state, shown: page.shown, paused: page.paused, busy: page.busy, received: page.received,
    drawn: page.drawn, fps: pageFps(), errors: page.errors, lastError: page.lastError,
    session: page.session, status: page.status,
  }),
  // Freeze the canvas (views keep arriving and are counted); returns the view it shows.
  pause: () => { if (!page.paused) togglePause(); return page.shown; },
  resume: () => { if (page.paused) togglePause(); },
  // The points the plot draws: [[t_capture (Unix s), sounding, uncertainty], ...].
  plotSeries: () => page.points.map((p) => p.slice()),
};

setState("connecting");
fitVideo();
drawPlot(plot, [], page.historyS);
connect();
