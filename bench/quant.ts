/**
 * 4-bit matmul benchmark: `matmulQ4` forward and its backward to x with f32 scales against the
 * same weight with double-quantized scales (QLoRA), measured in the same run on the current
 * adapter, plus each weight's device bytes. JSON lines out, a table at the end (stderr); never
 * asserted in tests.
 *
 * Timing: the minimum over the repetitions after one warm-up (which compiles the pipelines) of the
 * ms per call, `inner` calls per sync (a sync costs ~10 ms on llvmpipe).
 *
 * Run: `deno run -A bench/quant.ts [--shapes 1x2048x512,32x2048x512] [--reps 3]` (`MxKxN`: x is
 * M x K, the weight N x K).
 *
 * @module
 */
import { parseFlags } from "../util/flags.ts";
import { type Backend, createBackend } from "../kernels/backend.ts";
import { matmulQ4, matmulQ4Backward, quantize } from "../kernels/quant.ts";

/** One benchmark record. */
export interface QuantBenchRecord {
  op: "matmul_q4" | "matmul_q4_backward";
  shape: string;
  /** Scales double-quantized. */
  double_quant: boolean;
  ms: number;
  gflops: number;
  /** Device bytes of the quantized weight (codes and scales). */
  weight_bytes: number;
  backend: string;
  adapter: string;
}

/** Options of {@linkcode benchQuant}. */
export interface QuantBenchOptions {
  /** Backend to measure (default: `createBackend("auto")`). */
  backend?: Backend;
  /** `[M, K, N]` products. Default: decode (M = 1) and a batch (M = 32) over a 512 x 2048 weight. */
  shapes?: [number, number, number][];
  /** Timed repetitions after one warm-up (the minimum is reported). Default 3. */
  reps?: number;
}

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * 0.05;
  }
  return out;
}

/** Min over `reps` of the ms per call, `inner` calls per sync. */
async function time(be: Backend, reps: number, inner: number, fn: () => void): Promise<number> {
  fn();
  await be.sync();
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) fn();
    await be.sync();
    best = Math.min(best, (performance.now() - t0) / inner);
  }
  return best;
}

/**
 * Measure `matmulQ4` and `matmulQ4Backward` (NF4, blocks of 64) with and without double
 * quantization for each shape.
 *
 * @param opts backend, shapes and repetitions
 * @returns four records per shape (forward and backward, single and double quant)
 *
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { benchQuant } from "./quant.ts";
 * const recs = await benchQuant({ backend: await createBackend("cpu"), shapes: [[2, 72, 3]], reps: 1 });
 * if (recs.length !== 4 || !(recs[1].weight_bytes < recs[0].weight_bytes)) throw new Error("bench");
 * ```
 */
export async function benchQuant(opts: QuantBenchOptions = {}): Promise<QuantBenchRecord[]> {
  const be = opts.backend ?? await createBackend("auto");
  const reps = opts.reps ?? 3;
  const out: QuantBenchRecord[] = [];
  for (const [M, K, N] of opts.shapes ?? [[1, 2048, 512], [32, 2048, 512]]) {
    const w = be.fromArray(rand(N * K, 1), [N, K]);
    const x = be.fromArray(rand(M * K, 2), [M, K]);
    const y = be.empty([M, N]), dx = be.empty([M, K]);
    const flops = 2 * M * N * K;
    const inner = Math.max(1, Math.round(8 / M));
    for (const doubleQuant of [false, true]) {
      const q = quantize(w, { doubleQuant });
      const base = {
        shape: `${M}x${K}x${N}`,
        double_quant: doubleQuant,
        weight_bytes: q.bytes,
        backend: be.name,
        adapter: be.adapter,
      };
      const msF = await time(be, reps, inner, () => matmulQ4(y, x, q));
      const msB = await time(be, reps, inner, () => matmulQ4Backward(dx, y, q));
      out.push({ op: "matmul_q4", ...base, ms: msF, gflops: flops / msF / 1e6 });
      out.push({ op: "matmul_q4_backward", ...base, ms: msB, gflops: flops / msB / 1e6 });
      q.dispose();
    }
    for (const t of [w, x, y, dx]) t.dispose();
  }
  return out.sort((a, b) => a.shape.localeCompare(b.shape) || a.op.localeCompare(b.op));
}

if (import.meta.main) {
  const values = parseFlags("bench", Deno.args, {
    shapes: { type: "string" },
    reps: { type: "int", min: 1 },
  });
  const shapes = values.shapes?.split(",").map((s) => s.split("x").map(Number) as [number, number, number]);
  const recs = await benchQuant({ shapes, reps: values.reps });
  for (const r of recs) console.log(JSON.stringify(r));
  console.error(recs[0]?.adapter);
  console.error(
    recs.map((r) =>
      `${r.op.padEnd(19)} ${r.shape.padEnd(14)} ${r.double_quant ? "dq    " : "single"} ${
        r.ms.toFixed(2).padStart(8)
      } ms ${r.gflops.toFixed(2).padStart(7)} GFLOP/s ${String(r.weight_bytes).padStart(9)} B`
    ).join("\n"),
  );
}
