/**
 * The recipes' run report: `report.md` of a finished run folder with the headline metric against
 * the best baseline and the targets, a metrics table, charts (`metrics.svg`, `confusion.svg`, the
 * Trainer's `curves.svg`), per-class scores, the data, example predictions, the resolved config
 * as YAML, wall time and machine. The Trainer's own `report.md` is kept whole under "## Training".
 * @module
 */
import { join } from "node:path";
import { stringify } from "npm:yaml@^2.9";
import { pathExists, writeFileAtomic } from "../util/atomic.ts";
import { formatDuration } from "../util/format.ts";
import { isObject, Problems, show } from "../util/problems.ts";
import type { ConfusionMatrix } from "./classification.ts";
import { plotTrainingCurves, svgToPng } from "./plot.ts";
import { plotConfusionMatrix, plotMetricsComparison } from "./plot_eval.ts";

/** A published number a recipe's model is compared with (a row of the report's targets table). */
export interface RecipeTarget {
  /** Key of {@linkcode RecipeReport.metrics} to compare, e.g. `accuracy`, `rougeL`, `bleu`. */
  metric: string;
  /** The number to reach, on the metric's 0-100 scale; met when the model's score is at least this. */
  value: number;
  /** Where the number comes from: a path or URL, shown in the report. */
  source: string;
}

/** What a recipe measured, for {@linkcode writeRecipeReport}. Scores are on the 0-100 scale. */
export interface RecipeReport {
  /** e.g. "Summarization: Debian descriptions -> synopses". */
  title: string;
  /** The task kind; it picks the default headline metric (rougeL, bleu or accuracy). */
  task: "summarization" | "translation" | "classification";
  /** The resolved recipe config, shown as YAML. */
  config: Record<string, unknown>;
  /** The data section: a description and example counts, shown as a table. */
  data: {
    /** Markdown text describing the data, printed as a paragraph above the data table. */
    description: string;
    /** Training examples. */
    train: number;
    /** Validation examples. */
    validation: number;
    /** Examples the metrics were computed on. */
    evaluated: number;
    /** Extra rows of the data table (e.g. truncation counts); non-integers are printed to 2 decimals. */
    stats?: Record<string, string | number>;
  };
  /** The model's metrics (rouge1.., bleu, chrf, chrf++, accuracy, macro_f1), plus `n`. */
  metrics: Record<string, number>;
  /** Baseline name -> its metrics, same keys, e.g. `{"lead-6": {...}}`. */
  baselines: Record<string, Record<string, number>>;
  /** Name -> a published number to reach, e.g. `{"naive Bayes (README)": {metric: "accuracy", value: 97.25, source: "..."}}`. */
  targets?: Record<string, RecipeTarget>;
  /** Example predictions; the first 5 are shown (sources cut to 300 characters). */
  examples: { source: string; reference: string; prediction: string }[];
  /** Classification: the confusion matrix (drawn as `confusion.svg`). */
  confusion?: ConfusionMatrix;
  /** Classification: per-class precision / recall / F1 (0-100) and support. */
  per_class?: Record<string, { precision: number; recall: number; f1: number; support: number }>;
  /** The Trainer's log records: its `curves.svg` is linked when present in the folder, else drawn from these. */
  log_history?: Record<string, unknown>[];
  /** Wall-clock time of the whole recipe (training and evaluation), in seconds (>= 0). */
  wall_seconds: number;
  /** e.g. "llvmpipe (LLVM 15.0.6, 256 bits), 2 CPU cores". */
  machine: string;
  /** e.g. the sacreBLEU signature. */
  signature?: string;
  /** Free-text remarks, each one bullet of a `## Notes` section (newlines become spaces). */
  notes?: string[];
  /** The metric of the summary line (default: rougeL / bleu / accuracy by task, else the first). */
  headline?: string;
}

/** Options of {@linkcode writeRecipeReport}. */
export interface RecipeReportOptions {
  /** Also write a PNG beside every SVG of the report (`metrics.png`, `confusion.png`, `curves.png`). */
  png?: boolean;
}

const TASKS = ["summarization", "translation", "classification"] as const;
const HEADLINE: Record<RecipeReport["task"], string[]> = {
  summarization: ["rougeL", "rouge1", "rougeLsum", "rouge2"],
  translation: ["bleu", "chrf++", "chrf"],
  classification: ["accuracy", "macro_f1"],
};
const EXAMPLES = 5, SOURCE_CHARS = 300;
const BEGIN = "<!-- fledge:training-report:begin -->", END = "<!-- fledge:training-report:end -->";
const MARK = "<!-- fledge:recipe-report -->";

/** Text for a Markdown table cell or inline run: pipes, newlines, HTML tags and emphasis stay text. */
function markdownCell(s: string): string {
  return s
    .replace(/&/g, "&amp;").replace(/</g, "&lt;")
    .replace(/[\\`*_[\]|]/g, (c) => "\\" + c)
    .replace(/\r\n?|\n/g, "<br>");
}

/** Scores with two decimals; counts (and other integers outside scores) as they are. */
const f2 = (v: number) => v.toFixed(2);
const count = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(2));
const cut = (s: string, n: number) => (s.length > n ? s.slice(0, n).trimEnd() + "…" : s);

function numbers(p: Problems, key: string, v: unknown, hint = ""): void {
  if (!isObject(v)) return p.type(key, `expected an object of metric -> number, got ${show(v)}`);
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== "number") p.type(`${key}.${k}`, `expected a number, got ${show(x)}${hint}`);
  }
}

function validate(r: RecipeReport, dir: string): void {
  const p = new Problems();
  const str = (key: string, v: unknown) => {
    if (typeof v !== "string") p.type(key, `expected a string, got ${show(v)}`);
  };
  const size = (key: string, v: unknown) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      p.range(key, `expected a count >= 0, got ${show(v)}`);
    }
  };
  if (!isObject(r)) p.type("report", `expected a RecipeReport object, got ${show(r)}`);
  else {
    str("title", r.title);
    str("machine", r.machine);
    if (!TASKS.includes(r.task)) p.range("task", `expected one of ${TASKS.join(", ")}, got ${show(r.task)}`);
    if (!isObject(r.config)) p.type("config", `expected an object, got ${show(r.config)}`);
    if (!isObject(r.data)) {
      p.type("data", `expected {description, train, validation, evaluated}, got ${show(r.data)}`);
    } else {
      str("data.description", r.data.description);
      for (const k of ["train", "validation", "evaluated"] as const) size(`data.${k}`, r.data[k]);
    }
    numbers(p, "metrics", r.metrics, "; pass strings such as the BLEU signature as `signature`");
    if (!isObject(r.baselines)) p.type("baselines", `expected name -> metrics, got ${show(r.baselines)}`);
    else {
      for (const [k, v] of Object.entries(r.baselines)) numbers(p, `baselines.${k}`, v);
      if ("model" in r.baselines) {
        p.range("baselines.model", "the name `model` is the model's column; rename it");
      }
    }
    for (const [k, t] of Object.entries(r.targets ?? {})) {
      if (
        !isObject(t) || typeof t.metric !== "string" || typeof t.value !== "number" ||
        typeof t.source !== "string"
      ) {
        p.type(`targets.${k}`, `expected {metric, value, source}, got ${show(t)}`);
      }
    }
    if (!Array.isArray(r.examples)) p.type("examples", `expected an array, got ${show(r.examples)}`);
    else {
      r.examples.slice(0, EXAMPLES).forEach((e, i) => {
        for (const k of ["source", "reference", "prediction"] as const) str(`examples[${i}].${k}`, e?.[k]);
      });
    }
    if (typeof r.wall_seconds !== "number" || !(r.wall_seconds >= 0)) {
      p.range("wall_seconds", `expected seconds >= 0, got ${show(r.wall_seconds)}`);
    }
    if (r.headline !== undefined && !(r.headline in (r.metrics ?? {}))) {
      p.range("headline", `${show(r.headline)} is not among the metrics`);
    }
  }
  p.throwIfAny("Cannot write the recipe report", dir);
}

/** Headings of Markdown `md` one level deeper (outside fenced code), for nesting under another heading. */
function demoteHeadings(md: string): string {
  let fence: string | null = null;
  return md.split("\n").map((line) => {
    const f = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (f) {
      if (fence === null) fence = f[1];
      else if (f[1][0] === fence[0] && f[1].length >= fence.length) fence = null;
      return line;
    }
    return fence === null && /^#{1,5}(\s|$)/.test(line) ? "#" + line : line;
  }).join("\n");
}

/** The "## Training" block: from an earlier recipe report (kept as it is) or the Trainer's report.md. */
async function trainingSection(path: string): Promise<string | null> {
  let old: string;
  try {
    old = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const b = old.indexOf(BEGIN), e = old.indexOf(END, b);
  if (b >= 0 && e > b) return old.slice(b, e + END.length);
  if (old.includes(MARK)) return null; // our own report, with no Trainer report under it
  // The Trainer's "# Training report" title becomes "## Training"; the rest moves down one level.
  const body = old.replace(/^\s*# [^\n]*\n/, "").trim();
  return [BEGIN, "## Training", "", demoteHeadings(body), "", END].join("\n");
}

/** A Markdown code fence longer than any backtick run in `s`. */
function fenced(s: string, lang: string): string {
  const longest = Math.max(2, ...(s.match(/`+/g) ?? []).map((m) => m.length));
  const f = "`".repeat(longest + 1);
  return `${f}${lang}\n${s.replace(/\n$/, "")}\n${f}`;
}

/** The summary line: headline metric vs the best baseline, and each target met or missed. */
function summary(r: RecipeReport): string {
  const key = r.headline ?? HEADLINE[r.task].find((k) => k in r.metrics) ??
    Object.keys(r.metrics).find((k) => k !== "n");
  const parts: string[] = [];
  if (key === undefined || typeof r.metrics[key] !== "number") parts.push("No metric measured.");
  else {
    const v = r.metrics[key];
    let line = `**${markdownCell(key)} ${f2(v)}**` +
      ` on ${typeof r.metrics.n === "number" ? r.metrics.n : r.data.evaluated} examples`;
    const best = Object.entries(r.baselines)
      .filter(([, m]) => typeof m[key] === "number" && Number.isFinite(m[key]))
      .sort((a, b) => b[1][key] - a[1][key])[0];
    if (best) {
      const d = v - best[1][key];
      line += ` vs ${f2(best[1][key])} for the best baseline (${markdownCell(best[0])}): ` +
        `${d >= 0 ? "+" : "-"}${Math.abs(d).toFixed(2)}`;
    }
    parts.push(line + ".");
  }
  for (const [name, t] of Object.entries(r.targets ?? {})) {
    parts.push(
      `Target ${markdownCell(name)} (${markdownCell(t.metric)} ${f2(t.value)}): ${targetResult(r, t)}.`,
    );
  }
  return parts.join(" ");
}

function targetResult(r: RecipeReport, t: { metric: string; value: number }): string {
  const v = r.metrics[t.metric];
  if (typeof v !== "number" || !Number.isFinite(v)) return "not measured";
  // the README's targets are to beat: a tie at the shown precision is not above one
  const d = (Math.round(v * 100) - Math.round(t.value * 100)) / 100;
  return d > 0 ? `met (+${d.toFixed(2)})` : d === 0 ? "equal, not above" : `missed by ${(-d).toFixed(2)}`;
}

function table(head: string[], rows: string[][], align: ("l" | "r")[]): string[] {
  return [
    `| ${head.join(" | ")} |`,
    `| ${align.map((a) => (a === "r" ? "---:" : "---")).join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ];
}

/**
 * Write the report of a finished recipe run into its folder `dir`: `metrics.svg` (the model
 * against every baseline), `confusion.svg` when `report.confusion` is given, PNG copies of those
 * (and of the Trainer's `curves.svg`) when `opts.png`, and `report.md`: title, a summary line
 * (headline metric vs the best baseline; each target met or missed by how much), the metrics
 * table (model and baselines), targets, pictures, per-class scores, data, the first five example
 * predictions, the config as YAML, wall time and machine, notes. A `report.md` already in `dir`
 * (the Trainer's) is kept below under "## Training" with its headings one level down; writing
 * the report again keeps that block rather than nesting it. Every file is written atomically.
 * @param dir The run folder (made when missing).
 * @param report {@linkcode RecipeReport}.
 * @param opts {@linkcode RecipeReportOptions}.
 * @returns The path of `report.md`.
 * @throws {TypeError | RangeError} listing every problem of `report` at once.
 * @example
 * ```ts
 * import { writeRecipeReport } from "./run_report.ts";
 * const dir = await Deno.makeTempDir();
 * const path = await writeRecipeReport(dir, {
 *   title: "Translation: en -> de",
 *   task: "translation",
 *   config: { learning_rate: 2e-4 },
 *   data: { description: "Debian descriptions", train: 100, validation: 20, evaluated: 20 },
 *   metrics: { bleu: 21.5, chrf: 48.1, n: 20 },
 *   baselines: { identity: { bleu: 3.2, chrf: 30.5, n: 20 } },
 *   targets: { "paper": { metric: "bleu", value: 22, source: "https://example.org" } },
 *   examples: [{ source: "a text editor", reference: "ein Texteditor", prediction: "ein Editor" }],
 *   wall_seconds: 185,
 *   machine: "cpu",
 * });
 * const md = await Deno.readTextFile(path);
 * if (!md.includes("| bleu | 21.50 | 3.20 |") || !md.includes("missed by 0.50")) throw new Error(md);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeRecipeReport(
  dir: string,
  report: RecipeReport,
  opts: RecipeReportOptions = {},
): Promise<string> {
  validate(report, dir);
  const r = report;
  const reportPath = join(dir, "report.md");
  const training = await trainingSection(reportPath);
  const svgs: [string, string][] = [];
  const scores = (m: Record<string, number>) =>
    Object.fromEntries(Object.entries(m).filter(([k]) => k !== "n"));
  const series: Record<string, Record<string, number>> = { model: scores(r.metrics) };
  for (const [k, m] of Object.entries(r.baselines)) series[k] = scores(m);
  const charted = Object.values(series).some((m) => Object.keys(m).length > 0);
  if (charted) {
    svgs.push([
      "metrics",
      plotMetricsComparison(series, undefined, { title: `${r.title}: model vs baselines` }),
    ]);
  }
  if (r.confusion) {
    svgs.push([
      "confusion",
      plotConfusionMatrix(r.confusion, undefined, { title: `${r.title}: confusion matrix` }),
    ]);
  }
  for (const [name, svg] of svgs) await writeFileAtomic(join(dir, `${name}.svg`), svg);
  let curves = await pathExists(join(dir, "curves.svg"));
  // The Trainer draws curves.svg; a run without one (e.g. written elsewhere) gets it from log_history.
  const logs = (r.log_history ?? []).filter((x) => !("train_runtime" in x));
  if (!curves && logs.some((x) => typeof x.step === "number" && typeof x.loss === "number")) {
    plotTrainingCurves(logs, join(dir, "curves.svg"));
    curves = true;
  }
  if (opts.png) {
    const all = [...svgs];
    if (curves) all.push(["curves", await Deno.readTextFile(join(dir, "curves.svg"))]);
    for (const [name, svg] of all) await writeFileAtomic(join(dir, `${name}.png`), await svgToPng(svg));
  }

  const L: string[] = [MARK, `# ${markdownCell(r.title)}`, "", summary(r), "", "## Metrics", ""];
  const cols = ["model", ...Object.keys(r.baselines)];
  const keys = [...new Set([r.metrics, ...Object.values(r.baselines)].flatMap((m) => Object.keys(m)))]
    .sort((a, b) => Number(a === "n") - Number(b === "n"));
  const cell = (v: number | undefined, fmt = f2) => (typeof v === "number" ? fmt(v) : "-");
  L.push(
    ...table(
      ["metric", ...cols.map(markdownCell)],
      keys.map((k) => {
        const fmt = k === "n" ? count : f2;
        return [
          markdownCell(k),
          cell(r.metrics[k], fmt),
          ...Object.values(r.baselines).map((m) => cell(m[k], fmt)),
        ];
      }),
      ["l", ...cols.map(() => "r" as const)],
    ),
  );
  if (r.signature) L.push("", `Signature: \`${r.signature.replace(/`/g, "'")}\``);
  const targets = Object.entries(r.targets ?? {});
  if (targets.length) {
    L.push("", "### Targets", "");
    L.push(
      ...table(
        ["target", "metric", "value", "model", "result", "source"],
        targets.map(([name, t]) => [
          markdownCell(name),
          markdownCell(t.metric),
          f2(t.value),
          cell(r.metrics[t.metric]),
          targetResult(r, t),
          markdownCell(t.source),
        ]),
        ["l", "l", "r", "r", "l", "l"],
      ),
    );
  }
  const pictures: string[] = [];
  if (charted) pictures.push("![metrics: model vs baselines](metrics.svg)");
  if (r.confusion) pictures.push("![confusion matrix](confusion.svg)");
  if (curves) pictures.push("![training curves](curves.svg)");
  if (pictures.length) L.push("", "## Pictures", "", pictures.join("\n\n"));
  if (r.per_class && Object.keys(r.per_class).length) {
    L.push("", "## Per class", "");
    L.push(
      ...table(
        ["class", "precision", "recall", "F1", "support"],
        Object.entries(r.per_class).map(([c, m]) => [
          markdownCell(c),
          cell(m.precision),
          cell(m.recall),
          cell(m.f1),
          cell(m.support, count),
        ]),
        ["l", "r", "r", "r", "r"],
      ),
    );
  }
  L.push("", "## Data", "", r.data.description, "");
  const stats = Object.entries(r.data.stats ?? {}).map(([k, v]) => [
    markdownCell(k),
    typeof v === "number" ? count(v) : markdownCell(String(v)),
  ]);
  L.push(
    ...table(
      ["data", "value"],
      [
        ["train examples", String(r.data.train)],
        ["validation examples", String(r.data.validation)],
        ["evaluated", String(r.data.evaluated)],
        ...stats,
      ],
      ["l", "r"],
    ),
  );
  const shown = r.examples.slice(0, EXAMPLES);
  L.push("", `## Examples (${shown.length} of ${r.examples.length})`, "");
  L.push(
    ...table(
      ["#", "source", "reference", "prediction"],
      shown.map((e, i) => [
        String(i + 1),
        markdownCell(cut(e.source, SOURCE_CHARS)),
        markdownCell(e.reference),
        markdownCell(e.prediction),
      ]),
      ["r", "l", "l", "l"],
    ),
  );
  L.push("", "## Config", "", fenced(stringify(r.config, { lineWidth: 0 }), "yaml"));
  L.push(
    "",
    "## Run",
    "",
    `Wall time ${formatDuration(r.wall_seconds)} (${r.wall_seconds.toFixed(1)} s) on ${
      markdownCell(r.machine)
    }.`,
  );
  if (r.notes?.length) L.push("", "## Notes", "", ...r.notes.map((n) => `- ${n.replace(/\r?\n/g, " ")}`));
  if (training) L.push("", training);
  await writeFileAtomic(reportPath, L.join("\n") + "\n");
  return reportPath;
}
