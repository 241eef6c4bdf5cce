// The sounding score and the uncertainty over the last `historyS` seconds, as two lines on a canvas.

export const COLORS = { sounding: "#38d66b", uncertainty: "#ff9f1c", grid: "#3a3f47", text: "#8a8f98" };

// points: [[t_capture, sounding, uncertainty], ...] in time order; the newest is at the right edge.
export function drawPlot(canvas, points, historyS) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  const left = 28, right = 8, top = 8, bottom = 20;
  const pw = W - left - right, ph = H - top - bottom;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  ctx.strokeStyle = COLORS.grid;
  ctx.fillStyle = COLORS.text;
  for (const v of [0, 0.5, 1]) {
    const y = top + ph * (1 - v);
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(W - right, y); ctx.stroke();
    ctx.fillText(v.toFixed(1), 2, y + 4);
  }
  for (let s = 0; s <= historyS; s += 10) {
    const x = left + pw * (1 - s / historyS);
    ctx.fillText(s === 0 ? "now" : `-${s} s`, Math.min(x - 8, W - 26), H - 5);
  }
  if (points.length === 0) return;
  const tEnd = points[points.length - 1][0];
  const xOf = (t) => left + pw * (1 - (tEnd - t) / historyS);
  for (const [key, col] of [["uncertainty", 2], ["sounding", 1]]) {
    ctx.strokeStyle = COLORS[key];
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    for (const p of points) {
      if (tEnd - p[0] > historyS) continue;
      const x = xOf(p[0]), y = top + ph * (1 - Math.min(1, Math.max(0, p[col])));
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    }
    ctx.stroke();
  }
}
