/**
 * Charts of an evaluation: a confusion-matrix heat map (rows are the true label, columns the
 * predicted one, colour normalized per row so a rare class reads as clearly as a common one) and
 * grouped bars comparing the metrics of a model with its baselines. Plain SVG 1.1 like the
 * training curves of `plot.ts` (rasterize with its `svgToPng`).
 * @module
 */
import { axes, el, esc, formatValue, legend, niceTicks, PALETTE, scale, svgDoc, text } from "./_svg.ts";
import type { ConfusionMatrix } from "./classification.ts";
import { writeFileAtomicSync } from "../util/atomic.ts";

/** Options of {@linkcode plotConfusionMatrix}. */
export interface ConfusionMatrixPlotOptions {
  /** Chart title (default "Confusion matrix"). */
  title?: string;
}

/** Options of {@linkcode plotMetricsComparison}. */
export interface MetricsComparisonOptions {
  /** Chart title (default "Metrics"). */
  title?: string;
  /** Label of the value axis (default "score (0-100)" on a 0-100 axis, else "value"). */
  value_label?: string;
}

const HEAD = 44;
/** Page width that fits a 16px bold title (about 9.5 px a character) with margins. */
const titleWidth = (title: string) => Math.max(320, 40 + Math.ceil(9.5 * title.length));

/** White at 0 -> the palette's blue (#1f77b4) at 1, for a fraction `f` of a row. */
function heat(f: number): string {
  const to = [0x1f, 0x77, 0xb4];
  return "#" + to.map((c) => Math.round(255 + (c - 255) * f).toString(16).padStart(2, "0")).join("");
}

function checkConfusion(cm: unknown): asserts cm is ConfusionMatrix {
  const c = cm as ConfusionMatrix;
  if (typeof cm !== "object" || cm === null || !Array.isArray(c.labels) || !Array.isArray(c.matrix)) {
    throw new TypeError(
      "Cannot plot the confusion matrix: expected {labels, matrix} as confusionMatrix() returns it",
    );
  }
  const n = c.labels.length;
  if (n === 0) throw new RangeError("Cannot plot the confusion matrix: labels is empty");
  c.matrix.forEach((row, i) => {
    if (!Array.isArray(row) || row.length !== n) {
      throw new TypeError(
        `Cannot plot the confusion matrix: matrix[${i}] must be an array of ${n} counts, one per label`,
      );
    }
    row.forEach((v, j) => {
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
        throw new RangeError(
          `Cannot plot the confusion matrix: matrix[${i}][${j}] must be a count >= 0, got ${v}`,
        );
      }
    });
  });
  if (c.matrix.length !== n) {
    throw new TypeError(
      `Cannot plot the confusion matrix: matrix has ${c.matrix.length} rows for ${n} labels; it must be square`,
    );
  }
}

/**
 * Plot a confusion matrix as an SVG heat map: one row per true label, one column per predicted
 * label, the count printed in each cell and its share of the row as the colour (white 0%, blue
 * 100%; an empty row stays white). Row totals sit at the right, a colour key below.
 * @param cm `{labels, matrix}` with `matrix[i][j]` = samples of true `labels[i]` predicted as `labels[j]`.
 * @param path When given, the SVG is also written there atomically.
 * @param options {@linkcode ConfusionMatrixPlotOptions}.
 * @returns The SVG text.
 * @throws {TypeError} when the matrix is not square over the labels.
 * @throws {RangeError} when there are no labels or a count is negative or not finite.
 * @example
 * ```ts
 * import { plotConfusionMatrix } from "./plot_eval.ts";
 * const svg = plotConfusionMatrix({ labels: ["games", "other"], matrix: [[8, 2], [1, 89]] });
 * if ((svg.match(/class="cell"/g) ?? []).length !== 4 || !svg.includes(">89<")) throw new Error("cells");
 * ```
 */
export function plotConfusionMatrix(
  cm: ConfusionMatrix,
  path?: string,
  options: ConfusionMatrixPlotOptions = {},
): string {
  checkConfusion(cm);
  const n = cm.labels.length;
  const names = cm.labels.map(String);
  const longest = Math.max(...names.map((s) => s.length));
  const cell = n <= 8 ? 56 : Math.max(26, Math.floor(560 / n));
  const rowLabelW = Math.min(220, 24 + 7 * longest);
  const rotate = 7 * longest > cell - 6; // column labels that do not fit under a cell are slanted
  const colLabelH = rotate ? Math.min(160, 16 + 5 * longest) : 22;
  const box = { x: 40 + rowLabelW, y: HEAD + 30, w: n * cell, h: n * cell };
  const totals = cm.matrix.map((row) => row.reduce((a, b) => a + b, 0));
  const fontSize = cell >= 40 ? 12 : 9;
  let body = text(box.x + box.w / 2, box.y - 12, "predicted", {
    class: "axis-label x",
    "text-anchor": "middle",
    "font-weight": "bold",
  });
  const trueX = Math.max(16, box.x - 22 - 7 * longest);
  body += text(trueX, box.y + box.h / 2, "true", {
    class: "axis-label y",
    "text-anchor": "middle",
    "font-weight": "bold",
    transform: `rotate(-90 ${trueX} ${box.y + box.h / 2})`,
  });
  body += text(box.x + box.w + 8, box.y - 12, "total", { class: "total-label", "font-size": 10 });
  for (let i = 0; i < n; i++) {
    const y = box.y + i * cell;
    body += text(box.x - 8, y + cell / 2 + 4, names[i], { class: "row-label", "text-anchor": "end" });
    for (let j = 0; j < n; j++) {
      const x = box.x + j * cell, v = cm.matrix[i][j];
      const f = totals[i] > 0 ? v / totals[i] : 0;
      const tip = `true ${names[i]}, predicted ${names[j]}: ${v}` +
        (totals[i] > 0 ? ` (${formatValue(100 * f)}% of the row)` : "");
      body += el("rect", {
        class: "cell",
        x,
        y,
        width: cell,
        height: cell,
        fill: heat(f),
        stroke: i === j ? "#333333" : "#ffffff",
      }, el("title", {}, esc(tip)));
      body += text(x + cell / 2, y + cell / 2 + fontSize / 3, String(v), {
        class: "cell-value",
        "text-anchor": "middle",
        "font-size": fontSize,
        fill: f > 0.5 ? "#ffffff" : "#000000",
      });
    }
    body += text(box.x + box.w + 8, y + cell / 2 + 4, String(totals[i]), {
      class: "row-total",
      "font-size": 10,
    });
  }
  for (let j = 0; j < n; j++) {
    const cx = box.x + j * cell + cell / 2, cy = box.y + box.h + 16;
    body += text(
      cx,
      cy,
      names[j],
      rotate
        ? { class: "col-label", "text-anchor": "end", transform: `rotate(-45 ${cx} ${cy - 4})` }
        : { class: "col-label", "text-anchor": "middle" },
    );
  }
  // Colour key: five steps of the row share.
  const keyY = box.y + box.h + colLabelH + 10;
  body += text(box.x, keyY + 11, "share of the row:", { class: "key-label", "font-size": 10 });
  [0, 0.25, 0.5, 0.75, 1].forEach((f, k) => {
    const x = box.x + 96 + k * 44;
    body += el("rect", {
      class: "key-step",
      x,
      y: keyY,
      width: 16,
      height: 14,
      fill: heat(f),
      stroke: "#999999",
    });
    body += text(x + 20, keyY + 11, `${100 * f}%`, { class: "key-label", "font-size": 10 });
  });
  const title = options.title ?? "Confusion matrix";
  const width = Math.max(box.x + box.w + 60, box.x + 96 + 5 * 44 + 20, titleWidth(title));
  const svg = svgDoc(
    width,
    keyY + 30,
    title,
    el("g", { class: "panel" }, body),
  );
  if (path !== undefined) writeFileAtomicSync(path, svg);
  return svg;
}

/**
 * Plot metrics of several systems as grouped vertical bars: one group per metric (in order of
 * first appearance), one bar per series in each group (colours and legend per series), the
 * value printed on each bar. The value axis runs 0-100 when every value lies in [0, 100] (the
 * recipes' scale), else it spans the values and zero. Non-finite values and metrics a series
 * lacks are not drawn and are named in a note.
 * @param series Series name -> metric name -> value, e.g. `{model: {rouge1: 41.2}, "lead-6": {rouge1: 30.1}}`.
 * @param path When given, the SVG is also written there atomically.
 * @param options {@linkcode MetricsComparisonOptions}.
 * @returns The SVG text.
 * @throws {TypeError} when `series` is not an object of objects of numbers.
 * @throws {RangeError} when there is no series or no metric.
 * @example
 * ```ts
 * import { plotMetricsComparison } from "./plot_eval.ts";
 * const svg = plotMetricsComparison({
 *   model: { rouge1: 41.2, rouge2: 19.5 },
 *   "lead-6 baseline": { rouge1: 30.1, rouge2: 11.8 },
 * });
 * if ((svg.match(/class="bar"/g) ?? []).length !== 4 || !svg.includes(">41.20<")) throw new Error("bars");
 * ```
 */
export function plotMetricsComparison(
  series: Record<string, Record<string, number>>,
  path?: string,
  options: MetricsComparisonOptions = {},
): string {
  const isObj = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isObj(series)) {
    throw new TypeError("Cannot plot the metrics comparison: expected {series: {metric: number}}");
  }
  const names = Object.keys(series);
  if (names.length === 0) {
    throw new RangeError("Cannot plot the metrics comparison: no series; pass e.g. {model: {bleu: 21.3}}");
  }
  for (const s of names) {
    const m = series[s];
    if (!isObj(m)) throw new TypeError(`Cannot plot the metrics comparison: series "${s}" is not an object`);
    const bad = Object.keys(m).filter((k) => typeof m[k] !== "number");
    if (bad.length) {
      throw new TypeError(
        `Cannot plot the metrics comparison: series "${s}" has non-numbers at ${bad.join(", ")}`,
      );
    }
  }
  const metrics = [...new Set(names.flatMap((s) => Object.keys(series[s])))];
  if (metrics.length === 0) {
    throw new RangeError("Cannot plot the metrics comparison: no metric in any series");
  }
  const values = names.flatMap((s) => Object.values(series[s])).filter(Number.isFinite);
  const pct = values.every((v) => v >= 0 && v <= 100);
  const t = pct
    ? { ticks: [0, 20, 40, 60, 80, 100], domain: [0, 100] as [number, number] }
    : niceTicks(Math.min(0, ...values), Math.max(0, ...values));
  const barW = 30, gap = 26, groupW = names.length * barW + gap;
  const legendW = 40 + 7 * Math.max(...names.map((s) => s.length));
  const box = { x: 80, y: HEAD + 30, w: Math.max(240, metrics.length * groupW), h: 300 };
  const title = options.title ?? "Metrics";
  const width = Math.max(box.x + box.w + legendW + 16, titleWidth(title));
  const sy = scale(t.domain, [box.y + box.h, box.y]);
  const zero = sy(0);
  const missing: string[] = [];
  let body = axes(box, { ticks: [], sx: () => 0, label: "" }, {
    ticks: t.ticks,
    sy,
    label: options.value_label ?? (pct ? "score (0-100)" : "value"),
  });
  metrics.forEach((metric, g) => {
    const gx = box.x + g * groupW + gap / 2;
    body += text(gx + (names.length * barW) / 2, box.y + box.h + 18, metric, {
      class: "group-label",
      "text-anchor": "middle",
    });
    names.forEach((s, k) => {
      const v = series[s][metric];
      if (typeof v !== "number" || !Number.isFinite(v)) {
        missing.push(`${s}/${metric}`);
        return;
      }
      const x = gx + k * barW, y0 = Math.min(zero, sy(v));
      body += el("rect", {
        class: "bar",
        x: x + 1,
        y: y0,
        width: barW - 2,
        height: Math.max(0.5, Math.abs(sy(v) - zero)),
        fill: PALETTE[k % PALETTE.length],
      }, el("title", {}, esc(`${s}, ${metric}: ${v}`)));
      // two decimals, as report.md and metrics.json give the 0-100 metrics (it had shown 8.987 and 35)
      body += text(x + barW / 2, v >= 0 ? sy(v) - 4 : sy(v) + 11, v.toFixed(2), {
        class: "value-label",
        "text-anchor": "middle",
        "font-size": 9,
      });
    });
  });
  if (missing.length) {
    body += text(box.x + box.w / 2, HEAD + 10, `not drawn (missing or non-finite): ${missing.join(", ")}`, {
      class: "note",
      "text-anchor": "middle",
      "font-size": 10,
      fill: "#b00000",
    });
  }
  body += legend(
    width - 8,
    box.y,
    names.map((s, k) => ({ label: s, color: PALETTE[k % PALETTE.length] })),
    "rect",
  );
  const svg = svgDoc(
    width,
    box.y + box.h + 40,
    title,
    el("g", { class: "panel" }, body),
  );
  if (path !== undefined) writeFileAtomicSync(path, svg);
  return svg;
}
