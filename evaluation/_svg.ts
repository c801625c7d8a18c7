/**
 * Small SVG helpers shared by `plot.ts` and `plot_eval.ts`: escaping, axis ticks and their labels,
 * scales, axes, legends and the document frame.
 * Private: not re-exported.
 * @module
 */

/** Colour-blind-friendly categorical palette (matplotlib's tab10). */
export const PALETTE: readonly string[] = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

/** Font stack that resvg (with DejaVu), browsers and viewers all resolve. */
export const FONT = "DejaVu Sans, Arial, Helvetica, sans-serif";

/** Escape text for XML content and attribute values; characters XML 1.0 forbids become U+FFFD. */
export function esc(text: string): string {
  return text
    // deno-lint-ignore no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, "\ufffd")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

/** An element with attributes (numbers rounded to 2 decimals) and optional raw inner markup. */
export function el(tag: string, attrs: Record<string, string | number | undefined>, inner?: string): string {
  const a = Object.entries(attrs)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${typeof v === "number" ? round(v) : esc(v as string)}"`)
    .join("");
  return inner === undefined ? `<${tag}${a}/>` : `<${tag}${a}>${inner}</${tag}>`;
}

/** Round for coordinates: 2 decimals, no "-0". */
export function round(v: number): string {
  const r = Math.round(v * 100) / 100;
  return String(Object.is(r, -0) ? 0 : r);
}

/** A text element with escaped content. */
export function text(
  x: number,
  y: number,
  content: string,
  attrs: Record<string, string | number | undefined> = {},
): string {
  return el("text", { x, y, ...attrs }, esc(content));
}

/** The least and greatest of `values` (any number of them), or `empty` when there are none. */
export function extent(values: readonly number[], empty: [number, number]): [number, number] {
  if (!values.length) return empty;
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/** "Nice" linear ticks (1, 2, 5 x 10^k) covering [lo, hi], and the domain they span. */
export function niceTicks(lo: number, hi: number, count = 5): { ticks: number[]; domain: [number, number] } {
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const rough = (hi - lo) / Math.max(1, count - 1);
  const mag = 10 ** Math.floor(Math.log10(rough));
  const norm = rough / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const start = Math.floor(lo / step + 1e-9), end = Math.ceil(hi / step - 1e-9);
  const ticks: number[] = [];
  for (let k = start; k <= end; k++) ticks.push(k * step);
  return { ticks, domain: [start * step, end * step] };
}

/** Log-scale ticks for positive [lo, hi]: decades, then 2x and 5x, then 1..9x when too few. */
export function logTicks(lo: number, hi: number): { ticks: number[]; domain: [number, number] } {
  if (lo === hi) {
    lo /= 2;
    hi *= 2;
  }
  const span = Math.log10(hi) - Math.log10(lo);
  const domain: [number, number] = [
    10 ** (Math.log10(lo) - span * 0.05),
    10 ** (Math.log10(hi) + span * 0.05),
  ];
  const decades = (ms: number[]) => {
    const out: number[] = [];
    for (let k = Math.floor(Math.log10(domain[0])); k <= Math.ceil(Math.log10(domain[1])); k++) {
      for (const m of ms) {
        const v = m * 10 ** k;
        if (v >= domain[0] && v <= domain[1]) out.push(v);
      }
    }
    return out;
  };
  for (const ms of [[1], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
    const t = decades(ms);
    if (t.length >= 3) return { ticks: t, domain };
  }
  return { ticks: niceTicks(lo, hi).ticks.filter((v) => v >= domain[0] && v <= domain[1]), domain };
}

/**
 * Labels for a set of ticks: the fewest digits that still tell every tick apart and round-trip,
 * fixed notation for magnitudes in [1e-3, 1e5), exponential (`2.5e-5`) outside.
 */
export function tickLabels(ticks: number[]): string[] {
  const big = Math.max(...ticks.map(Math.abs));
  const expo = big !== 0 && (big < 1e-3 || big >= 1e5);
  for (let d = 0; d <= 12; d++) {
    const labels = ticks.map((v) => formatNumber(v, d, expo));
    const ok = labels.every((l, i) => Math.abs(Number(l) - ticks[i]) <= 1e-9 * Math.max(big, 1e-300)) &&
      new Set(labels).size === labels.length;
    if (ok) return labels;
  }
  return ticks.map((v) => formatNumber(v, 6, expo));
}

/** One number with `digits` decimals (or mantissa decimals), trailing zeros dropped. */
export function formatNumber(v: number, digits: number, expo: boolean): string {
  if (v === 0 || Object.is(v, -0)) return "0";
  if (expo) {
    const [m, e] = v.toExponential(digits).split("e");
    return `${m.includes(".") ? m.replace(/\.?0+$/, "") : m}e${Number(e)}`;
  }
  const s = v.toFixed(digits);
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
}

/** A value label: 4 significant digits, exponential for tiny or huge magnitudes. */
export function formatValue(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return formatNumber(v, 3, true);
  return String(Number(v.toPrecision(4)));
}

/** Map a value from a domain onto pixels, linear or log10. */
export function scale(domain: [number, number], range: [number, number], log = false): (v: number) => number {
  const f = log ? Math.log10 : (x: number) => x;
  const d0 = f(domain[0]), d1 = f(domain[1]);
  const k = d1 === d0 ? 0 : (range[1] - range[0]) / (d1 - d0);
  return (v) => range[0] + (f(v) - d0) * k;
}

/** Axes, ticks, tick labels and axis labels of one plot area; returns the markup. */
export function axes(
  box: { x: number; y: number; w: number; h: number },
  xt: { ticks: number[]; sx: (v: number) => number; label: string },
  yt: { ticks: number[]; sy: (v: number) => number; label: string },
): string {
  const { x, y, w, h } = box;
  const parts: string[] = [el("rect", { x, y, width: w, height: h, fill: "#ffffff", stroke: "#cccccc" })];
  const xl = tickLabels(xt.ticks), yl = tickLabels(yt.ticks);
  const xs = xt.ticks.map((t, i) => {
    const px = xt.sx(t);
    return el("line", { x1: px, y1: y, x2: px, y2: y + h, stroke: "#eeeeee" }) +
      el("line", { x1: px, y1: y + h, x2: px, y2: y + h + 5, stroke: "#333333" }) +
      text(px, y + h + 18, xl[i], { class: "tick-label x", "text-anchor": "middle" });
  });
  const ys = yt.ticks.map((t, i) => {
    const py = yt.sy(t);
    return el("line", { x1: x, y1: py, x2: x + w, y2: py, stroke: "#eeeeee" }) +
      el("line", { x1: x - 5, y1: py, x2: x, y2: py, stroke: "#333333" }) +
      text(x - 8, py + 4, yl[i], { class: "tick-label y", "text-anchor": "end" });
  });
  parts.push(
    el(
      "g",
      { class: "axis x" },
      el("line", { x1: x, y1: y + h, x2: x + w, y2: y + h, stroke: "#333333" }) + xs.join(""),
    ),
  );
  parts.push(
    el(
      "g",
      { class: "axis y" },
      el("line", { x1: x, y1: y, x2: x, y2: y + h, stroke: "#333333" }) + ys.join(""),
    ),
  );
  parts.push(text(x + w / 2, y + h + 38, xt.label, { class: "axis-label x", "text-anchor": "middle" }));
  parts.push(text(x - 56, y + h / 2, yt.label, {
    class: "axis-label y",
    "text-anchor": "middle",
    transform: `rotate(-90 ${x - 56} ${y + h / 2})`,
  }));
  return parts.join("");
}

/**
 * A legend box whose top-right corner is at (`x`, `y`): a line (curves) or a filled square (bars)
 * per entry, then its label.
 */
export function legend(
  x: number,
  y: number,
  entries: { label: string; color: string }[],
  swatch: "line" | "rect" = "line",
): string {
  const width = 24 + 7 * Math.max(...entries.map((e) => e.label.length));
  const rows = entries.map((e, i) =>
    (swatch === "line"
      ? el("line", {
        x1: x - width + 6,
        y1: y + 12 + 16 * i,
        x2: x - width + 20,
        y2: y + 12 + 16 * i,
        stroke: e.color,
        "stroke-width": 2,
      })
      : el("rect", { x: x - width + 7, y: y + 6 + 16 * i, width: 12, height: 12, fill: e.color })) +
    text(x - width + 24, y + 16 + 16 * i, e.label, { class: "legend-label" })
  );
  const box = el("rect", {
    x: x - width,
    y,
    width,
    height: 8 + 16 * entries.length,
    fill: "#ffffff",
    "fill-opacity": 0.85,
    stroke: "#999999",
  });
  return el("g", { class: "legend" }, box + rows.join(""));
}

/** A whole SVG 1.1 document: white page, `<title>`, a bold centred title, then `body`. */
export function svgDoc(width: number, height: number, title: string, body: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="${esc(FONT)}" font-size="12">\n` +
    el("title", {}, esc(title)) + el("rect", { width, height, fill: "#ffffff" }) +
    text(width / 2, 26, title, {
      class: "title",
      "text-anchor": "middle",
      "font-size": 16,
      "font-weight": "bold",
    }) +
    body + "\n</svg>\n";
}
