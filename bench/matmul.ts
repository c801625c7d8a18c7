/**
 * Matmul benchmark: fledge's WGSL matmul vs tfjs-webgpu on the same adapter, square sizes and
 * LLM-shaped products (`MxKxN`: A is M x K, B is K x N). JSON lines on stdout, a table at the end
 * (stderr). Timing: `performance.now()` around the dispatch and `await gpu.sync()` (tfjs: the
 * product plus a one-element slice read back, which waits for it), minimum over the repetitions
 * after one warm-up (which includes pipeline compilation).
 *
 * Run: `deno run -A bench/matmul.ts [--no-tfjs] [--autotune] [--shapes=1024x1024x1024,...]`
 *
 * @module
 */
import { createBackend } from "../kernels/backend.ts";
import { autotuneMatmul, describeMatmulConfig, matmulConfigText, matmulForward } from "../kernels/matmul.ts";
import { parseFlags } from "../util/flags.ts";

/** One benchmark result (one JSON line). */
export interface MatmulBenchRecord {
  op: "matmul";
  shape: string;
  ms: number;
  gflops: number;
  gbps: number;
  backend: "webgpu" | "tfjs-webgpu";
  adapter: string;
  config?: string;
  note?: string;
}

/** Options of {@linkcode benchMatmul}. */
export interface MatmulBenchOptions {
  /** `[M, K, N]` products (default: square 256..2048 and LLM shapes). */
  shapes?: [number, number, number][];
  /** Timed repetitions after the warm-up (default 2; 1 for products over 8 GFLOP). */
  reps?: number;
  /** Also run tfjs-webgpu (default true). */
  tfjs?: boolean;
  /** Run the autotune first (default false: use the cached or default config). */
  autotune?: boolean;
  /** Adapter name filter (as `FLEDGE_ADAPTER`). */
  adapter?: string;
  /** Each record as it is measured (default: print a JSON line). */
  onRecord?: (r: MatmulBenchRecord) => void;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

/** Default shapes: square, then LLM-like (MLP up-projection, attention projection, decode). */
export const MATMUL_BENCH_SHAPES: [number, number, number][] = [
  [256, 256, 256],
  [512, 512, 512],
  [1024, 1024, 1024],
  [2048, 2048, 2048],
  [4096, 512, 1536],
  [512, 4096, 4096],
  [1, 4096, 4096],
];

function randomData(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

function record(
  shape: [number, number, number],
  ms: number,
  backend: MatmulBenchRecord["backend"],
  adapter: string,
  extra: Partial<MatmulBenchRecord> = {},
): MatmulBenchRecord {
  const [M, K, N] = shape;
  return {
    op: "matmul",
    shape: shape.join("x"),
    ms: +ms.toFixed(3),
    gflops: +(2 * M * N * K / ms / 1e6).toFixed(3),
    gbps: +(4 * (M * K + K * N + M * N) / ms / 1e6).toFixed(3),
    backend,
    adapter,
    ...extra,
  };
}

async function timeIt(reps: number, run: () => Promise<void>): Promise<number> {
  await run(); // warm-up: compiles pipelines
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await run();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** Minimal view of the tfjs modules we use (bench-only dependency). */
type Tf = {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  backend(): { adapterInfo?: { description?: string } };
  tensor2d(values: Float32Array, shape: [number, number]): TfTensor;
  matMul(a: TfTensor, b: TfTensor): TfTensor;
  slice(x: TfTensor, begin: number[], size: number[]): TfTensor;
};
type TfTensor = { dispose(): void; data(): Promise<unknown> };

async function loadTfjs(): Promise<Tf> {
  const tf = await import("npm:@tensorflow/tfjs-core@^4.22") as unknown as Tf;
  await import("npm:@tensorflow/tfjs-backend-webgpu@^4.22");
  if (!(await tf.setBackend("webgpu"))) throw new Error("tf.setBackend('webgpu') returned false");
  await tf.ready();
  return tf;
}

/**
 * Run the benchmark and return the records (also printed as JSON lines unless `onRecord` is
 * given).
 *
 * @example
 * ```ts ignore
 * const recs = await benchMatmul({ shapes: [[256, 256, 256]], tfjs: false });
 * console.log(recs[0].gflops);
 * ```
 */
export async function benchMatmul(opts: MatmulBenchOptions = {}): Promise<MatmulBenchRecord[]> {
  const log = opts.log ?? ((s: string) => console.error(s));
  const emit = opts.onRecord ?? ((r: MatmulBenchRecord) => console.log(JSON.stringify(r)));
  const shapes = opts.shapes ?? MATMUL_BENCH_SHAPES;
  const repsFor = (s: [number, number, number]) => opts.reps ?? (2 * s[0] * s[1] * s[2] > 8e9 ? 1 : 2);
  const be = await createBackend("webgpu", { adapter: opts.adapter });
  const gpu = be.device;
  const adapter = gpu.info.description;
  if (opts.autotune) await autotuneMatmul(gpu, { log });
  log(describeMatmulConfig(gpu));
  const records: MatmulBenchRecord[] = [];
  const push = (r: MatmulBenchRecord) => {
    records.push(r);
    emit(r);
  };
  for (const shape of shapes) {
    const [M, K, N] = shape;
    const a = be.fromArray(randomData(M * K, 1), [M, K]), b = be.fromArray(randomData(K * N, 2), [K, N]);
    const out = be.empty([M, N]);
    const ms = await timeIt(repsFor(shape), async () => {
      matmulForward(out, a, b);
      await gpu.sync();
    });
    push(record(shape, ms, "webgpu", adapter, { config: matmulConfigText(gpu, M, N, K) }));
    for (const t of [a, b, out]) t.dispose();
    gpu.trim();
  }
  if (opts.tfjs ?? true) {
    let tf: Tf | null = null;
    try {
      tf = await loadTfjs();
    } catch (e) {
      const why = `tfjs-webgpu did not start under Deno: ${(e as Error).message}`;
      log(why);
      for (const shape of shapes) push({ ...record(shape, NaN, "tfjs-webgpu", "none"), note: why });
    }
    if (tf) {
      const tb = tf.backend();
      const tfAdapter = tb.adapterInfo?.description || adapter;
      for (const shape of shapes) {
        const [M, K, N] = shape;
        const a = tf.tensor2d(randomData(M * K, 1), [M, K]), b = tf.tensor2d(randomData(K * N, 2), [K, N]);
        const ms = await timeIt(repsFor(shape), async () => {
          // Reading one element back waits for the whole product (tfjs records lazily; its queue
          // hooks do not expose completion), at the cost of one tiny readback.
          const y = tf!.matMul(a, b);
          const one = tf!.slice(y, [0, 0], [1, 1]);
          await one.data();
          one.dispose();
          y.dispose();
        });
        push(record(shape, ms, "tfjs-webgpu", tfAdapter));
        a.dispose();
        b.dispose();
      }
    }
  }
  be.destroy();
  return records;
}

/** The records as a text table (one row per shape, one column pair per backend). */
export function matmulTable(records: MatmulBenchRecord[]): string {
  const shapes = [...new Set(records.map((r) => r.shape))];
  const backs = [...new Set(records.map((r) => r.backend))];
  const head = ["shape", ...backs.flatMap((b) => [`${b} ms`, `${b} GFLOP/s`]), "speedup"];
  const rows = shapes.map((s) => {
    const cells = backs.map((b) => records.find((r) => r.shape === s && r.backend === b));
    const [ours, peer] = [cells[0], cells[1]];
    const speed = ours && peer && Number.isFinite(peer.ms) ? (peer.ms / ours.ms).toFixed(1) + "x" : "-";
    return [
      s,
      ...cells.flatMap((c) =>
        c && Number.isFinite(c.ms) ? [c.ms.toFixed(1), c.gflops.toFixed(2)] : ["-", "-"]
      ),
      speed,
    ];
  });
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all.map((r) => r.map((c, i) => c.padStart(w[i])).join("  ")).join("\n");
}

if (import.meta.main) {
  const values = parseFlags("bench", Deno.args, {
    shapes: { type: "string" },
    no_tfjs: { type: "boolean" },
    autotune: { type: "boolean" },
  });
  const shapes = values.shapes?.split(",").map((s) => {
    const dims = s.split("x").map(Number);
    if (dims.length !== 3 || !dims.every((d) => Number.isInteger(d) && d >= 1)) {
      throw new RangeError(
        `Cannot run the benchmark: --shapes ${
          JSON.stringify(s)
        } is not MxKxN in positive integers (e.g. 64x128x32)`,
      );
    }
    return dims as [number, number, number];
  });
  const recs = await benchMatmul({ shapes, tfjs: !values.no_tfjs, autotune: values.autotune });
  console.error("\n" + matmulTable(recs));
}
