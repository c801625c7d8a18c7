/**
 * Benchmark: training tokens/s of packed rows (`packExamples`, bfd: attention within each example
 * through segment ids, positions restarting) against the same examples padded one per row
 * (`padExamples`, TRL `packing: false`), on the Debian summarization documents, whose lengths are
 * skewed (bytes: median about 400, 90th percentile 760, longest 2700). Both sides train the same
 * examples, so the same real tokens; a step is loss + backward over a micro-batch of rows, one loss
 * readback per step (as `bench/block.ts`; no optimizer update); a pass is every row once, and the
 * fastest of `reps` passes per layout counts, the layouts alternating. Ids are the documents' UTF-8 bytes
 * (+ 3, past pad/bos/eos), so no tokenizer is trained; `max_length` (default 1024) raises the
 * preset's `max_position_embeddings` when it is larger (RoPE presets: no parameter added).
 *
 * JSON lines: one `train_packing` record per layout (ms for all rows, tokens/s of real tokens,
 * rows, fill ratio) and one `packing_speedup` record (packed tokens/s over padded tokens/s), each
 * with the backend and adapter. Never asserted in tests.
 *
 * Run: `deno task bench --only packing [--quick]` or `deno run -A bench/packing.ts [--examples 48]
 * [--max_length 1024] [--batch 4] [--reps 2] [--preset tiny]`.
 * @module
 */
import { backward } from "../kernels/autograd.ts";
import { type Backend, createBackend } from "../kernels/backend.ts";
import { presetConfig } from "../models/config.ts";
import { type ForwardOptions, Transformer } from "../models/transformer.ts";
import { type PackableExample, packExamples, type PackingSummary, padExamples } from "../data/packing.ts";
import { RowDataset } from "../data/row_dataset.ts";
import { parseFlags } from "../util/flags.ts";

/** One result line. */
export interface PackingBenchRecord {
  op: "train_packing" | "packing_speedup";
  shape: string;
  ms: number;
  backend: string;
  adapter: string;
  /** `bfd` (packed) or `padding` (one example per row). */
  layout?: string;
  tokens_per_s?: number;
  rows?: number;
  real_tokens?: number;
  fill_ratio?: number;
  /** Packed tokens/s over padded tokens/s (the `packing_speedup` record). */
  speedup?: number;
  padded_ms?: number;
}

/** Options of {@linkcode benchPacking}. */
export interface PackingBenchOptions {
  backend?: Backend;
  /** Model preset (default `tiny`). */
  preset?: "tiny" | "small";
  /** Documents to train on (default 48), spread evenly over the file. */
  examples?: number;
  /** Row length (default 1024). */
  max_length?: number;
  /** Rows per step (default 4). */
  batch?: number;
  /** Timed passes per layout, alternating padded and packed; the fastest counts (default 2). */
  reps?: number;
  /** The JSONL file with a `document` field (default the shared Debian summarization train split). */
  file?: string;
}

const DEFAULT_FILE = new URL("../../shared/datasets/debian/summarization/train.jsonl", import.meta.url);

/** `n` documents spread evenly over the file, as byte-level examples (every token trained). */
async function documents(file: string | URL, n: number): Promise<PackableExample[]> {
  const lines = (await Deno.readTextFile(file)).split("\n").filter((l) => l.trim());
  const enc = new TextEncoder(), out: PackableExample[] = [];
  for (let i = 0; i < n && i < lines.length; i++) {
    const doc = JSON.parse(lines[Math.floor(i * lines.length / n)]).document;
    if (typeof doc !== "string") throw new TypeError(`Cannot bench packing: ${file} has no "document" text`);
    const ids = Int32Array.from(enc.encode(doc), (b) => b + 3);
    out.push({ input_ids: ids, labels: ids });
  }
  return out;
}

/** Loss + backward over every row of `ds`, `batch` rows per step; returns the ms taken. */
async function epoch(be: Backend, model: Transformer, ds: RowDataset, batch: number, limit = Infinity) {
  const t0 = performance.now();
  for (let r0 = 0, n = 0; r0 < ds.num_blocks && n < limit; r0 += batch, n++) {
    const idx = Array.from({ length: Math.min(batch, ds.num_blocks - r0) }, (_, i) => r0 + i);
    const shape = [idx.length, ds.block_size];
    const i32 = (a: Int32Array) => be.fromArray(a, shape, "i32");
    const ids = i32(ds.batch(idx)), labels = i32(ds.labels(idx));
    const mask = ds.attention_mask(idx);
    const opts: ForwardOptions = ds.packed
      ? { position_ids: i32(ds.position_ids(idx)), segment_ids: i32(ds.segment_ids(idx)) }
      : { attention_mask: mask ? i32(mask) : null };
    const loss = model.loss(ids, labels, opts);
    for (const t of [ids, labels, opts.attention_mask, opts.position_ids, opts.segment_ids]) t?.dispose();
    backward(loss);
    await loss.toArray();
    loss.dispose();
    for (const p of model.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }
  return performance.now() - t0;
}

/**
 * Time a training pass over the same documents packed (bfd) and padded, with one warm-up step of
 * each layout first (pipeline compiles).
 */
export async function benchPacking(opts: PackingBenchOptions = {}): Promise<PackingBenchRecord[]> {
  const be = opts.backend ?? await createBackend("auto");
  const L = opts.max_length ?? 1024, B = opts.batch ?? 4, preset = opts.preset ?? "tiny";
  const ex = await documents(opts.file ?? DEFAULT_FILE, opts.examples ?? 48);
  const base = presetConfig(preset);
  const config = presetConfig(preset, {
    max_position_embeddings: Math.max(L, base.max_position_embeddings),
  });
  const layouts: [string, { rows: ConstructorParameters<typeof RowDataset>[0]; summary: PackingSummary }][] =
    [
      ["padding", padExamples(ex, { max_length: L })],
      ["bfd", packExamples(ex, { max_length: L, strategy: "bfd" })],
    ];
  const model = Transformer.init(config, be, { seed: 1 });
  model.setTrainable(true);
  const sets = layouts.map(([name, p]) =>
    [name, new RowDataset(p.rows, { source: name }), p.summary] as const
  );
  for (const [, ds] of sets) await epoch(be, model, ds, B, 1); // warm-up
  // Alternate the layouts and keep each one's fastest pass: a load that comes and goes on a
  // shared machine then hits both alike.
  const best = sets.map(() => Infinity);
  for (let r = 0; r < (opts.reps ?? 2); r++) {
    for (const [i, [, ds]] of sets.entries()) best[i] = Math.min(best[i], await epoch(be, model, ds, B));
  }
  const out: PackingBenchRecord[] = [];
  const shape = `${preset} docs=${ex.length} max_length=${L} batch=${B}`;
  for (const [i, [layout, , s]] of sets.entries()) {
    const ms = best[i];
    out.push({
      op: "train_packing",
      shape,
      layout,
      ms: +ms.toFixed(1),
      tokens_per_s: +(s.real_tokens / (ms / 1000)).toFixed(1),
      rows: s.rows,
      real_tokens: s.real_tokens,
      fill_ratio: +s.fill_ratio.toFixed(3),
      backend: be.name,
      adapter: be.adapter,
    });
  }
  model.dispose();
  const [pad, packed] = out;
  out.push({
    op: "packing_speedup",
    shape,
    ms: packed.ms,
    padded_ms: pad.ms,
    speedup: +(packed.tokens_per_s! / pad.tokens_per_s!).toFixed(2),
    backend: be.name,
    adapter: be.adapter,
  });
  return out;
}

if (import.meta.main) {
  const f = parseFlags("bench/packing.ts", Deno.args, {
    examples: { type: "string" },
    max_length: { type: "string" },
    batch: { type: "string" },
    preset: { type: "string" },
    reps: { type: "string" },
  });
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const rs = await benchPacking({
    examples: num(f.examples),
    max_length: num(f.max_length),
    batch: num(f.batch),
    preset: f.preset as "tiny" | "small" | undefined,
    reps: num(f.reps),
  });
  for (const r of rs) console.log(JSON.stringify(r));
}
