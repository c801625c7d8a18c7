/**
 * The benchmark runner behind `deno task bench` and `deno task cli bench`: one list of benchmarks,
 * run in one order on one backend, each record handed out as it is measured (JSON lines), and the
 * table printed at the end. Never asserted in tests.
 *
 * `matmul`, `attention` and `block` run by default; `train_tfjs` (fledge vs tfjs-webgpu training
 * tokens/s), `load_model` (a 1 GB checkpoint's peak RSS), `finetune` (full / LoRA / DoRA / QLoRA step
 * time and peak memory of the `small` preset through the Trainer) and `packing` (training tokens/s of
 * packed vs padded rows of the same Debian documents) take minutes and run only when named.
 * @module
 */
import { type Backend, createBackend } from "../kernels/backend.ts";
import { closest } from "../util/problems.ts";

/** One measurement: the op, its shape, the time and the backend; benchmarks add their rates. */
export interface BenchRecord {
  op: string;
  shape: string;
  ms: number;
  backend: string;
  adapter: string;
  [k: string]: unknown;
}

/** Every benchmark by name, in the order they run. */
export const BENCHMARKS: readonly string[] = Object.freeze([
  "matmul",
  "attention",
  "block",
  "train_tfjs",
  "load_model",
  "finetune",
  "packing",
  "generate",
]);

/** The benchmarks run when none is named. */
export const DEFAULT_BENCHMARKS: readonly string[] = Object.freeze(["matmul", "attention", "block"]);

/** Options of {@linkcode runBenchmarks}. */
export interface RunBenchmarksOptions {
  /** Names from {@linkcode BENCHMARKS} (default {@linkcode DEFAULT_BENCHMARKS}). */
  only?: readonly string[];
  /** Smaller sizes (seconds instead of minutes). */
  quick?: boolean;
  /** Called with each record as soon as it is measured. */
  onRecord?: (r: BenchRecord) => void;
}

/** What {@linkcode runBenchmarks} returns. */
export interface BenchResult {
  /** Every record, in the order measured. */
  records: BenchRecord[];
  /** The adapter the backend ran on. */
  adapter: string;
  /** Extra tables of benchmarks that print their own (finetune), "" when none. */
  notes: string;
}

/**
 * Check benchmark names against {@linkcode BENCHMARKS}.
 * @param names the names asked for (comma-separated lists are split)
 * @returns the names, split and deduplicated
 * @throws {RangeError} an unknown name (with a did-you-mean hint and the list), or names that are all empty
 */
export function benchmarkNames(names: readonly string[]): string[] {
  const out = [...new Set(names.flatMap((n) => n.split(",")).map((n) => n.trim()).filter(Boolean))];
  if (names.length && !out.length) {
    throw new RangeError(
      `bench: --only ${JSON.stringify(names.join(","))} names no benchmark (benchmarks: ${
        BENCHMARKS.join(", ")
      })`,
    );
  }
  for (const n of out) {
    if (!BENCHMARKS.includes(n)) {
      const hint = closest(n, BENCHMARKS);
      throw new RangeError(
        `bench: unknown benchmark ${JSON.stringify(n)}${hint ? `; did you mean ${hint}?` : ""} ` +
          `(benchmarks: ${BENCHMARKS.join(", ")})`,
      );
    }
  }
  return out;
}

/**
 * Run benchmarks on the `auto` backend (WebGPU when an adapter answers).
 * @param opts {@linkcode RunBenchmarksOptions}
 * @returns the records, the adapter and extra tables
 * @throws {RangeError} an unknown benchmark name
 */
export async function runBenchmarks(opts: RunBenchmarksOptions = {}): Promise<BenchResult> {
  const only = new Set(opts.only?.length ? benchmarkNames(opts.only) : DEFAULT_BENCHMARKS);
  const quick = opts.quick ?? false;
  const be: Backend = await createBackend("auto");
  const records: BenchRecord[] = [];
  const emit = (rs: unknown[]) => {
    for (const r of rs as BenchRecord[]) {
      opts.onRecord?.(r);
      records.push(r);
    }
  };
  let notes = "";
  if (only.has("matmul")) {
    const { benchMatmul } = await import("./matmul.ts");
    const shapes: [number, number, number][] | undefined = quick
      ? [[256, 256, 256], [512, 512, 512], [1024, 1024, 1024]]
      : undefined;
    emit(await benchMatmul({ shapes }));
  }
  if (only.has("attention")) {
    const { benchAttention } = await import("./attention.ts");
    emit(await benchAttention({ backend: be, T: quick ? [128, 256] : [128, 256, 512, 1024] }));
  }
  if (only.has("block")) {
    const { benchBlock } = await import("./block.ts");
    emit(await benchBlock({ backend: be, presets: quick ? ["tiny"] : ["tiny", "small"] }));
  }
  if (only.has("train_tfjs")) {
    // A computed specifier keeps TensorFlow.js (280 MB of npm packages) out of `deno compile`'s
    // module graph: the compiled CLI never runs this comparison.
    const tfjs = new URL("./train_tfjs.ts", import.meta.url).href;
    const { benchTrainTfjs } = await import(tfjs) as typeof import("./train_tfjs.ts");
    emit(await benchTrainTfjs({ models: quick ? ["tiny"] : ["tiny", "small"] }));
  }
  if (only.has("load_model")) {
    const { benchLoadModel } = await import("./load_model.ts");
    const r = await benchLoadModel({ backend: be, target_bytes: quick ? 1e8 : 1e9 });
    emit([{ ...r, op: "load_model", shape: `${r.shape} (${(r.bytes / 1e6).toFixed(0)} MB)` }]);
  }
  if (only.has("finetune")) {
    const { benchFinetune, finetuneTable } = await import("./finetune.ts");
    const rs = await benchFinetune({ backend: be, ...(quick ? { B: 2, T: 64, steps: 2 } : {}) });
    emit(rs);
    notes = finetuneTable(rs);
  }
  if (only.has("packing")) {
    const { benchPacking } = await import("./packing.ts");
    emit(await benchPacking({ backend: be, examples: quick ? 16 : 48 }));
  }
  if (only.has("generate")) {
    const { benchGenerate } = await import("./generate.ts");
    emit(await benchGenerate({ backend: be, quick, ...(quick ? { B: 16, P: 32, new_tokens: 16 } : {}) }));
  }
  return { records, adapter: be.adapter, notes };
}

/**
 * The table printed after the JSON lines: op, shape, backend, ms and the rate.
 * @param result what {@linkcode runBenchmarks} returned
 * @returns the table, ending with the adapter line
 */
export function benchTable(result: BenchResult): string {
  const rate = (r: BenchRecord) =>
    r.gflops !== undefined
      ? `${r.gflops} GFLOP/s`
      : r.tokens_per_s !== undefined
      ? `${r.tokens_per_s} tok/s`
      : r.speedup !== undefined
      ? `${r.speedup}x`
      : "";
  const lines = [
    `${"op".padEnd(16)} ${"shape".padEnd(44)} ${"backend".padEnd(14)} ${"ms".padStart(10)}  rate`,
  ];
  for (const r of result.records) {
    const op = String(r.op) + (r.pass ? ` ${r.pass === "forward" ? "fwd" : "fwd+bwd"}` : "") +
      (r.method ? ` ${r.method}` : "") + (r.layout ? ` ${r.layout}` : "");
    lines.push(
      `${op.padEnd(16)} ${r.shape.padEnd(44)} ${r.backend.padEnd(14)} ${r.ms.toFixed(2).padStart(10)}  ${
        rate(r)
      }`,
    );
  }
  if (result.notes) lines.push("", result.notes);
  lines.push(`adapter: ${result.adapter}`);
  return lines.join("\n");
}
