// A small line chart of p(fake) per tracked face over the last minute, drawn on a <canvas>.
// Written here rather than pulled from a CDN: the page must work with no internet access.

const PALETTE = ["#58a6ff", "#f778ba", "#3fb950", "#d29922", "#a371f7", "#ff7b72", "#79c0ff", "#e3b341"];
const MAX_POINTS_PER_TRACK = 2000;

export class ScoreChart {
  // threshold: the FAKE threshold line; unsureLow..unsureHigh: the band where the verdict is
  // UNSURE (REAL below it, FAKE above it). Set from the server's verdict rule with setVerdictRule.
  constructor(canvas, { windowSeconds = 60, threshold = null, unsureLow = null, unsureHigh = null } = {}) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.windowSeconds = windowSeconds;
    this.threshold = threshold;
    this.unsureLow = unsureLow;
    this.unsureHigh = unsureHigh;
    this.series = new Map(); // track id -> [{t, p}]
    this.live = false; // whether the newest point of each face is marked as the current score
    this.dirty = false;
    this.frameRequested = false;
  }

  setVerdictRule(threshold, unsureLow, unsureHigh) {
    this.threshold = threshold;
    this.unsureLow = unsureLow;
    this.unsureHigh = unsureHigh;
    this.requestDraw();
  }

  clear() {
    this.series.clear();
    this.requestDraw();
  }

  // After Stop: the lines stay for reference, but nothing is marked as a current score.
  stopLive() {
    this.live = false;
    this.requestDraw();
  }

  // t: seconds (any monotonic origin); p: probability of fake in [0, 1], or null when not ready.
  add(trackId, t, p) {
    if (p === null || !Number.isFinite(p)) return;
    let points = this.series.get(trackId);
    if (!points) {
      points = [];
      this.series.set(trackId, points);
    }
    points.push({ t, p });
    this.live = true;
    if (points.length > MAX_POINTS_PER_TRACK) points.splice(0, points.length - MAX_POINTS_PER_TRACK);
    this.requestDraw();
  }

  colour(trackId) {
    return PALETTE[Math.abs(trackId) % PALETTE.length];
  }

  requestDraw() {
    // At most one redraw per displayed frame, however many messages arrive.
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      this.draw();
    });
  }

  draw() {
    const { canvas, context } = this;
    const width = canvas.width, height = canvas.height;
    const left = 34, right = 8, top = 8, bottom = 20;
    const plotWidth = width - left - right, plotHeight = height - top - bottom;
    context.clearRect(0, 0, width, height);

    let latest = -Infinity;
    for (const points of this.series.values()) {
      if (points.length) latest = Math.max(latest, points[points.length - 1].t);
    }
    const end = Number.isFinite(latest) ? latest : 0;
    const start = end - this.windowSeconds;
    const x = (t) => left + ((t - start) / this.windowSeconds) * plotWidth;
    const y = (p) => top + (1 - p) * plotHeight;

    context.font = "11px system-ui, sans-serif";
    context.fillStyle = "#9aa4b2";
    context.strokeStyle = "#2a313b";
    context.lineWidth = 1;
    for (const p of [0, 0.25, 0.5, 0.75, 1]) {
      context.beginPath();
      context.moveTo(left, y(p));
      context.lineTo(width - right, y(p));
      context.stroke();
      context.fillText(p.toFixed(2), 2, y(p) + 4);
    }
    context.fillText(`last ${this.windowSeconds} s`, left, height - 5);

    if (this.threshold !== null) {
      // The UNSURE band, then the threshold itself, where the server's verdict changes.
      const low = Math.max(0, this.unsureLow ?? this.threshold), high = Math.min(1, this.unsureHigh ?? this.threshold);
      if (high > low) {
        context.fillStyle = "rgba(210, 153, 34, 0.18)";
        context.fillRect(left, y(high), plotWidth, Math.max(1, y(low) - y(high)));
      }
      context.setLineDash([5, 4]);
      context.strokeStyle = "#f85149";
      context.beginPath();
      context.moveTo(left, y(this.threshold));
      context.lineTo(width - right, y(this.threshold));
      context.stroke();
      context.setLineDash([]);
      context.fillStyle = "#f85149";
      context.fillText(`threshold ${this.threshold.toFixed(3)}`, width - right - 100, Math.max(top + 10, y(high) - 3));
    }

    let legendX = left + 80;
    for (const [trackId, points] of this.series) {
      while (points.length && points[0].t < start) points.shift();
      if (!points.length) continue;
      context.strokeStyle = this.colour(trackId);
      context.lineWidth = 2;
      context.beginPath();
      points.forEach((point, i) => (i ? context.lineTo(x(point.t), y(point.p)) : context.moveTo(x(point.t), y(point.p))));
      context.stroke();
      context.fillStyle = this.colour(trackId);
      if (this.live) {
        const last = points[points.length - 1];
        context.beginPath();
        context.arc(x(last.t), y(last.p), 3, 0, 2 * Math.PI);
        context.fill();
      }
      context.fillText(`face ${trackId}`, legendX, height - 5);
      legendX += 56;
    }
  }
}
