/**
 * Standalone SVG charts of a training run: loss / learning-rate / grad-norm curves from a
 * `metrics.jsonl` (Hugging Face Trainer `log_history` shape) and a bar chart of final metrics.
 * Output is plain SVG 1.1 (text elements, no scripts, no external references), readable in any
 * browser or viewer; {@linkcode svgToPng} rasterizes with resvg compiled to WebAssembly.
 * @module
 */
import {
  axes,
  el,
  esc,
  extent,
  formatValue,
  legend,
  logTicks,
  niceTicks,
  PALETTE,
  scale,
  svgDoc,
  text,
} from "./_svg.ts";
import { writeFileAtomicSync } from "../util/atomic.ts";
import { agree } from "../util/problems.ts";

/** One log record: `step` plus any numeric metrics (`loss`, `eval_loss`, `learning_rate`, ...). */
export type LogRecord = Record<string, unknown>;

/** Options of {@linkcode plotTrainingCurves}. */
export interface TrainingCurvesOptions {
  /** Chart title (default "Training curves"). */
  title?: string;
  /** Metrics to draw, in order (default: every numeric key except the x key, `epoch`,
   * `total_flos` and `*_runtime` / `*_per_second` throughput keys). */
  metrics?: string[];
  /** Record key used as x (default `"step"`). */
  x?: "step" | "epoch";
  /** Log10 y axis for the loss panel (keys ending in `loss`); non-positive values are skipped. */
  log_scale_loss?: boolean;
  /** Panels per row (default 2). */
  columns?: number;
}

/** Options of {@linkcode plotMetricsBar}. */
export interface MetricsBarOptions {
  /** Chart title (default "Metrics"). */
  title?: string;
  /** Label of the value axis (default "value"). */
  value_label?: string;
}

const PANEL_W = 480, PANEL_H = 300, HEAD = 44;
const M = { left: 72, right: 16, top: 34, bottom: 48 };
const IGNORED = /^(epoch|total_flos)$|_runtime$|_per_second$/;

interface Series {
  key: string;
  color: string;
  points: [number, number][];
  skipped: number;
}

function isNonFinite(v: unknown): boolean {
  return (typeof v === "number" && !Number.isFinite(v)) ||
    (typeof v === "string" && /^[-+]?(nan|inf|infinity)$/i.test(v.trim()));
}

/**
 * Plot training curves as one SVG: one panel per metric, except that every key ending in `loss`
 * (`loss`, `eval_loss`, ...) shares the first panel, one series each. Each panel has axes with
 * ticks and numbers, axis labels, a title and a legend. Records without a number at the x key are
 * skipped; a missing metric in a record is simply no point; NaN / ±Infinity (numbers or the
 * strings Python's json writes) are skipped and counted in a note under the panel title, as are
 * non-positive values on a log axis. A series with one point shows as a dot.
 * @param log_history Log records as in `metrics.jsonl` / HF `trainer.state.log_history`.
 * @param path When given, the SVG is also written there atomically (temp file + rename).
 * @param options {@linkcode TrainingCurvesOptions}.
 * @returns The SVG text.
 * @throws {TypeError} when `log_history` is not an array of objects.
 * @throws {RangeError} when no record has a number at the x key together with a metric to draw.
 * @example
 * ```ts
 * import { plotTrainingCurves } from "./plot.ts";
 * const svg = plotTrainingCurves([
 *   { step: 10, loss: 2.5, learning_rate: 5e-5 },
 *   { step: 20, loss: 2.1, learning_rate: 4e-5, eval_loss: 2.3 },
 * ]);
 * if (!svg.includes("<polyline") || !svg.includes("eval_loss")) throw new Error("no curves");
 * ```
 */
export function plotTrainingCurves(
  log_history: LogRecord[],
  path?: string,
  options: TrainingCurvesOptions = {},
): string {
  if (
    !Array.isArray(log_history) ||
    log_history.some((r) => typeof r !== "object" || r === null || Array.isArray(r))
  ) {
    throw new TypeError(
      "Cannot plot training curves: log_history is not an array of objects; pass the parsed metrics.jsonl lines",
    );
  }
  const xKey = options.x ?? "step";
  if (options.columns !== undefined && !(Number.isInteger(options.columns) && options.columns >= 1)) {
    throw new RangeError(`Cannot plot training curves: columns ${options.columns} is not an integer >= 1`);
  }
  const rows = log_history.filter((r) => typeof r[xKey] === "number" && Number.isFinite(r[xKey]));
  const logged = [
    ...new Set(
      rows.flatMap((r) =>
        Object.keys(r).filter((k) =>
          k !== xKey && !IGNORED.test(k) && (typeof r[k] === "number" || isNonFinite(r[k]))
        )
      ),
    ),
  ];
  const absent = options.metrics?.filter((k) => !rows.some((r) => k in r));
  if (absent?.length && rows.length) {
    throw new RangeError(
      `Cannot plot training curves: ${absent.map((k) => JSON.stringify(k)).join(", ")} ${
        agree(absent).is
      } in ` +
        `no record with a numeric "${xKey}"; the records have ${logged.join(", ") || "no metrics"}`,
    );
  }
  const keys = options.metrics ?? logged;
  if (keys.length === 0 || rows.length === 0) {
    throw new RangeError(
      `Cannot plot training curves: ${rows.length} of ${log_history.length} records have a numeric "${xKey}" and ` +
        `${keys.length} metrics were found; log records like {"${xKey}": 10, "loss": 2.3}`,
    );
  }
  const isLoss = (k: string) => /loss$/.test(k);
  const groups: string[][] = keys.some(isLoss) ? [keys.filter(isLoss)] : [];
  for (const k of keys) if (!isLoss(k)) groups.push([k]);
  const cols = Math.max(1, Math.min(options.columns ?? 2, groups.length));
  const title = options.title ?? "Training curves";
  const panels = groups.map((group, g) => {
    const log = options.log_scale_loss === true && isLoss(group[0]);
    const px = (g % cols) * PANEL_W, py = HEAD + Math.floor(g / cols) * PANEL_H;
    const series: Series[] = group.map((key) => {
      const s: Series = { key, color: PALETTE[keys.indexOf(key) % PALETTE.length], points: [], skipped: 0 };
      for (const r of rows) {
        const v = r[key];
        if (isNonFinite(v) || (log && typeof v === "number" && v <= 0)) s.skipped++;
        else if (typeof v === "number") s.points.push([r[xKey] as number, v]);
      }
      return s;
    });
    const all = series.flatMap((s) => s.points);
    const box = {
      x: px + M.left,
      y: py + M.top,
      w: PANEL_W - M.left - M.right,
      h: PANEL_H - M.top - M.bottom,
    };
    const name = group.length > 1 ? "loss" : group[0];
    const notes = series.filter((s) => s.skipped > 0).map((s) =>
      `${s.key}: ${s.skipped} ${log ? "non-finite or <= 0" : "non-finite"} skipped`
    );
    if (all.length === 0) notes.push("no finite values");
    let body = text(px + PANEL_W / 2, py + 14, name + (log ? " (log scale)" : ""), {
      class: "panel-title",
      "text-anchor": "middle",
      "font-weight": "bold",
    });
    if (notes.length) {
      body += text(px + PANEL_W / 2, py + 27, notes.join("; "), {
        class: "note",
        "text-anchor": "middle",
        "font-size": 10,
        fill: "#b00000",
      });
    }
    // extents by a loop: spreading 150k points into Math.min overflowed the stack, and the report went with it
    const [xlo, xhi] = extent(all.map((p) => p[0]), [0, 1]),
      [ylo, yhi] = extent(all.map((p) => p[1]), [0, 1]);
    const xt = niceTicks(xlo, xhi);
    const yt = log && all.length ? logTicks(ylo, yhi) : niceTicks(ylo, yhi);
    const sx = scale(xt.domain, [box.x, box.x + box.w]);
    const sy = scale(yt.domain, [box.y + box.h, box.y], log);
    body += axes(box, { ticks: xt.ticks, sx, label: xKey }, { ticks: yt.ticks, sy, label: name });
    for (const s of series) {
      if (s.points.length === 0) continue;
      const pts = s.points.map(([x, y]) => `${sx(x).toFixed(2)},${sy(y).toFixed(2)}`).join(" ");
      body += el("polyline", {
        class: "series",
        points: pts,
        fill: "none",
        stroke: s.color,
        "stroke-width": 1.8,
      }, el("title", {}, esc(s.key)));
      if (s.points.length <= 30) {
        body += s.points.map(([x, y]) =>
          el("circle", { class: "marker", cx: sx(x), cy: sy(y), r: 2.5, fill: s.color })
        ).join("");
      }
    }
    body += legend(
      box.x + box.w - 6,
      box.y + 6,
      series.map((s) => ({ label: s.key + (s.points.length ? "" : " (no data)"), color: s.color })),
    );
    return el("g", { class: "panel" }, body);
  });
  const svg = svgDoc(
    cols * PANEL_W,
    HEAD + Math.ceil(groups.length / cols) * PANEL_H,
    title,
    panels.join("\n"),
  );
  if (path !== undefined) writeFileAtomicSync(path, svg);
  return svg;
}

/**
 * Plot named metrics as a horizontal bar chart SVG (labels on the left, a value axis with ticks
 * at the bottom, the value printed at each bar's end, zero included so negatives read right).
 * Non-finite values are left out and named in a note.
 * @param metrics Metric name -> value (e.g. `{rouge1: 0.41, rouge2: 0.19, rougeL: 0.38}`).
 * @param path When given, the SVG is also written there atomically.
 * @param options {@linkcode MetricsBarOptions}.
 * @returns The SVG text.
 * @throws {TypeError} when `metrics` is not an object of numbers.
 * @throws {RangeError} when it is empty.
 * @example
 * ```ts
 * import { plotMetricsBar } from "./plot.ts";
 * const svg = plotMetricsBar({ rouge1: 0.41, rouge2: 0.19, rougeL: 0.38 });
 * if ((svg.match(/class="bar"/g) ?? []).length !== 3) throw new Error("bars");
 * ```
 */
export function plotMetricsBar(
  metrics: Record<string, number>,
  path?: string,
  options: MetricsBarOptions = {},
): string {
  if (typeof metrics !== "object" || metrics === null || Array.isArray(metrics)) {
    throw new TypeError(
      `Cannot plot metrics: expected an object of name -> number, got ${
        Array.isArray(metrics) ? "an array" : typeof metrics
      }`,
    );
  }
  const bad = Object.entries(metrics).filter(([, v]) => typeof v !== "number").map(([k]) => k);
  if (bad.length) throw new TypeError(`Cannot plot metrics: values of ${bad.join(", ")} are not numbers`);
  const entries = Object.entries(metrics).filter(([, v]) => Number.isFinite(v));
  const skipped = Object.keys(metrics).filter((k) => !Number.isFinite(metrics[k]));
  if (Object.keys(metrics).length === 0) {
    throw new RangeError("Cannot plot metrics: the object is empty; pass e.g. {accuracy: 0.91}");
  }
  const labelW = Math.min(240, 16 + 7 * Math.max(...Object.keys(metrics).map((k) => k.length)));
  const rowH = 26, width = labelW + 520;
  const box = { x: labelW, y: HEAD + 20, w: width - labelW - 60, h: Math.max(1, entries.length) * rowH };
  const vals = entries.map(([, v]) => v);
  const t = niceTicks(Math.min(0, ...vals), Math.max(0, ...vals));
  const sx = scale(t.domain, [box.x, box.x + box.w]);
  const zero = sx(0);
  let body = "";
  if (skipped.length) {
    body += text(width / 2, HEAD + 8, `non-finite, not drawn: ${skipped.join(", ")}`, {
      class: "note",
      "text-anchor": "middle",
      "font-size": 10,
      fill: "#b00000",
    });
  }
  body += axes(box, { ticks: t.ticks, sx, label: options.value_label ?? "value" }, {
    ticks: [],
    sy: () => 0,
    label: "",
  });
  entries.forEach(([k, v], i) => {
    const y = box.y + i * rowH + 4, x0 = Math.min(zero, sx(v));
    body += el("rect", {
      class: "bar",
      x: x0,
      y,
      width: Math.max(0.5, Math.abs(sx(v) - zero)),
      height: rowH - 8,
      fill: PALETTE[i % PALETTE.length],
    }, el("title", {}, esc(`${k}: ${v}`)));
    body += text(box.x - 8, y + rowH / 2, k, { class: "bar-label", "text-anchor": "end" });
    body += text(v >= 0 ? sx(v) + 4 : sx(v) - 4, y + rowH / 2, formatValue(v), {
      class: "value-label",
      "text-anchor": v >= 0 ? "start" : "end",
      "font-size": 10,
    });
  });
  const svg = svgDoc(
    width,
    box.y + box.h + M.bottom + 4,
    options.title ?? "Metrics",
    el("g", { class: "panel" }, body),
  );
  if (path !== undefined) writeFileAtomicSync(path, svg);
  return svg;
}

/** Options of {@linkcode svgToPng}. */
export interface PngOptions {
  /** Output width in pixels (default: the SVG's own width). */
  width?: number;
  /** TTF/OTF files for text. Default: DejaVu Sans / Liberation Sans / Noto Sans from the usual
   * Linux font folders when present. Without any font, text is not drawn (lines and bars are). */
  font_files?: string[];
  /** Family name of `font_files` for the SVG's generic `sans-serif` (e.g. "Noto Sans"). */
  font_family?: string;
}

const DEFAULT_FONTS: [string, string][] = [
  ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "DejaVu Sans"],
  ["/usr/share/fonts/dejavu/DejaVuSans.ttf", "DejaVu Sans"],
  ["/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf", "Liberation Sans"],
  ["/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf", "Noto Sans"],
];

let wasmReady: Promise<void> | undefined; // the wasm module initialises once per process

/**
 * Rasterize an SVG to PNG bytes with `npm:@resvg/resvg-wasm` (resvg compiled to WebAssembly; the
 * .wasm ships inside the npm package, nothing is downloaded at run time). Loaded on first call
 * only, so importing this module does not pull it in. Needs read permission for the npm cache
 * and the font files.
 * @param svg SVG text (e.g. from {@linkcode plotTrainingCurves}).
 * @param options {@linkcode PngOptions}.
 * @returns PNG file bytes.
 * @throws {SyntaxError} when resvg cannot parse the SVG.
 * @example
 * ```ts
 * import { plotMetricsBar, svgToPng } from "./plot.ts";
 * const png = await svgToPng(plotMetricsBar({ accuracy: 0.9 }));
 * if (png[1] !== 0x50 || png[2] !== 0x4e || png[3] !== 0x47) throw new Error("not a PNG");
 * ```
 */
export async function svgToPng(svg: string, options: PngOptions = {}): Promise<Uint8Array> {
  // deno-lint-ignore no-import-prefix
  const resvg = await import("npm:@resvg/resvg-wasm@^2.6");
  wasmReady ??= (async () => {
    const url = import.meta.resolve("npm:@resvg/resvg-wasm@^2.6/index_bg.wasm");
    await resvg.initWasm(url.startsWith("file:") ? await Deno.readFile(new URL(url)) : await fetch(url));
  })();
  await wasmReady;
  const fontBuffers: Uint8Array[] = [];
  let family = options.font_family;
  if (options.font_files) {
    for (const f of options.font_files) {
      try {
        fontBuffers.push(Deno.readFileSync(f));
      } catch (e) {
        throw new TypeError(
          `Cannot rasterize SVG: font file ${f} is unreadable: ${(e as Error).message}; fix font_files`,
        );
      }
    }
  } else {
    for (const [f, name] of DEFAULT_FONTS) {
      try {
        fontBuffers.push(Deno.readFileSync(f));
        family ??= name;
        break;
      } catch { /* not installed here: try the next */ }
    }
  }
  let r;
  try {
    r = new resvg.Resvg(svg, {
      fitTo: options.width ? { mode: "width", value: options.width } : { mode: "original" },
      font: family ? { fontBuffers, defaultFontFamily: family, sansSerifFamily: family } : { fontBuffers },
    });
  } catch (e) {
    throw new SyntaxError(`Cannot rasterize SVG: resvg rejected it: ${(e as Error).message ?? e}`);
  }
  return r.render().asPng();
}
