// A small line chart on a <canvas>: a few series over the last minutes, y scaled to the
// largest value shown. No library: the console loads nothing from elsewhere.

import { formatRate, h } from "./ui.js";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

export class LineChart {
  /// `series`: [{name}], `windowMs`: how much time the x axis shows.
  constructor(title, series, windowMs, unit) {
    this.series = series;
    this.windowMs = windowMs;
    this.unit = unit || "";
    this.canvas = h("canvas", { width: 560, height: 180, role: "img", "aria-label": title });
    this.legend = h("div", { class: "legend" });
    this.el = h("figure", { class: "chart" }, h("figcaption", {}, title), this.canvas, this.legend);
  }

  /// Draws `points` ([{t, values: [v per series]}], oldest first).
  draw(points) {
    const c = this.canvas;
    const width = c.clientWidth || c.width;
    const ratio = window.devicePixelRatio || 1;
    const height = 180;
    if (c.width !== Math.round(width * ratio)) {
      c.width = Math.round(width * ratio);
      c.height = Math.round(height * ratio);
    }
    const g = c.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 48;
    const bottom = height - 20;
    const top = 8;
    const right = width - 8;
    const now = points.length ? points[points.length - 1].t : Date.now();
    const from = now - this.windowMs;
    let max = 1;
    for (const p of points) for (const v of p.values) if (v > max) max = v;
    max = niceCeil(max);
    const style = getComputedStyle(document.body);
    g.strokeStyle = style.getPropertyValue("--grid") || "#ddd";
    g.fillStyle = style.getPropertyValue("--muted") || "#666";
    g.font = "11px sans-serif";
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = bottom - ((bottom - top) * i) / 4;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(right, y);
      g.stroke();
      g.fillText(formatRate((max * i) / 4), 4, y + 4);
    }
    const minutes = Math.round(this.windowMs / 60000);
    g.fillText(`-${minutes} min`, left, height - 4);
    g.fillText("now", right - 22, height - 4);
    const x = (t) => left + ((t - from) / this.windowMs) * (right - left);
    const y = (v) => bottom - (v / max) * (bottom - top);
    this.series.forEach((s, i) => {
      g.strokeStyle = COLORS[i % COLORS.length];
      g.lineWidth = 2;
      g.beginPath();
      let started = false;
      for (const p of points) {
        if (p.t < from) continue;
        const v = p.values[i];
        if (v === null || v === undefined) continue;
        if (started) g.lineTo(x(p.t), y(v));
        else g.moveTo(x(p.t), y(v));
        started = true;
      }
      g.stroke();
      // The newest point as a dot (a single sample draws no line).
      const lastPoint = points[points.length - 1];
      if (lastPoint && lastPoint.values[i] !== null && lastPoint.values[i] !== undefined) {
        g.fillStyle = COLORS[i % COLORS.length];
        g.beginPath();
        g.arc(x(lastPoint.t), y(lastPoint.values[i]), 3, 0, 2 * Math.PI);
        g.fill();
      }
    });
    const last = points.length ? points[points.length - 1].values : [];
    this.legend.replaceChildren(
      ...this.series.map((s, i) => {
        const swatch = h("span", { class: "swatch" });
        swatch.style.background = COLORS[i % COLORS.length];
        const v = last[i];
        return h("span", { class: "item" }, swatch, `${s.name}: `,
          h("strong", { class: "value", dataset: { series: s.name } }, v === undefined || v === null ? "–" : formatRate(v)),
          this.unit);
      }),
    );
  }
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
