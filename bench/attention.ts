/**
 * Attention benchmark: forward and forward+backward of causal attention for B=1, H=8, D=64 over
 * T = 128..1024 on the current adapter. JSON lines out (`deno run -A bench/attention.ts`), never
 * asserted in tests.
 *
 * FLOPs count only the visible (causal) score pairs: forward 4·D per pair (QKᵀ and PV), backward
 * 2.5x the forward (the FlashAttention-2 convention; our dQ and dK/dV kernels each recompute S).
 * Timing: the minimum over the repetitions after one warm-up (the machine may be shared); for T < 512
 * each repetition runs (512 / T)² calls before one sync (a sync costs ~10 ms on llvmpipe).
 *
 * Run: `deno run -A bench/attention.ts [--T 128,256] [--reps 5] [--kernels tile|reg|tex]` (`--kernels`
 * forces one kernel family for the three training kernels; default: the adapter's choice).
 *
 * @module
 */
import { parseFlags } from "../util/flags.ts";
import {
  attentionBackward,
  attentionConfigFor,
  attentionForward,
  type AttentionOptions,
  kernelConfigKey,
} from "../kernels/attention.ts";
import { type Backend, createBackend } from "../kernels/backend.ts";

/** One benchmark record. */
export interface AttentionBenchRecord {
  op: "attention";
  pass: "forward" | "forward+backward";
  shape: string;
  causal: boolean;
  ms: number;
  gflops: number;
  backend: string;
  adapter: string;
  /** Kernel configs used (forward, dq, dkv). */
  config: string;
}

/** Options of {@linkcode benchAttention}. */
export interface AttentionBenchOptions {
  /** Backend to measure (default: `createBackend("auto")`). */
  backend?: Backend;
  /** Sequence lengths. Default [128, 256, 512, 1024]. */
  T?: number[];
  B?: number;
  H?: number;
  D?: number;
  causal?: boolean;
  /** Timed repetitions after one warm-up (the minimum is reported). Default 3. */
  reps?: number;
  /** Kernel configurations (default: the adapter's). */
  kernels?: AttentionOptions["kernels"];
}

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** Min over `reps` of the ms per call, `inner` calls per sync (hides the ~10 ms sync latency). */
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
 * Measure attention forward and forward+backward for each T.
 *
 * @param opts backend, sizes and repetitions
 * @returns one record per (T, pass)
 *
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { benchAttention } from "./attention.ts";
 * const recs = await benchAttention({ backend: await createBackend("cpu"), T: [8], H: 2, D: 16, reps: 1 });
 * if (recs.length !== 2 || !(recs[0].ms >= 0)) throw new Error("bench");
 * ```
 */
export async function benchAttention(opts: AttentionBenchOptions = {}): Promise<AttentionBenchRecord[]> {
  const be = opts.backend ?? await createBackend("auto");
  const B = opts.B ?? 1, H = opts.H ?? 8, D = opts.D ?? 64, causal = opts.causal ?? true;
  const reps = opts.reps ?? 3;
  const out: AttentionBenchRecord[] = [];
  const cfg = be.name === "webgpu" ? { ...attentionConfigFor(be.device), ...opts.kernels } : null;
  const config = cfg
    ? `forward ${kernelConfigKey(cfg.forward)}, dq ${kernelConfigKey(cfg.dq)}, dkv ${
      kernelConfigKey(cfg.dkv)
    }`
    : "reference";
  for (const T of opts.T ?? [128, 256, 512, 1024]) {
    const shape = [B, T, H, D];
    const q = be.fromArray(rand(B * T * H * D, 1), shape);
    const k = be.fromArray(rand(B * T * H * D, 2), shape);
    const v = be.fromArray(rand(B * T * H * D, 3), shape);
    const dout = be.fromArray(rand(B * T * H * D, 4), shape);
    const o = be.empty(shape), lse = be.empty([B, H, T]);
    const dq = be.empty(shape), dk = be.empty(shape), dv = be.empty(shape);
    const pairs = causal ? T * (T + 1) / 2 : T * T;
    const fwdFlops = 4 * B * H * pairs * D;
    const opt = { causal, kernels: opts.kernels };
    const fwd = () => attentionForward(o, lse, q, k, v, opt);
    // Short problems run several times per sync so that the sync round trip does not dominate.
    const inner = Math.max(1, Math.round((512 / T) ** 2));
    const msF = await time(be, reps, inner, fwd);
    const msFB = await time(be, reps, inner, () => {
      fwd();
      attentionBackward(dq, dk, dv, dout, q, k, v, o, lse, opt);
    });
    const base = {
      op: "attention" as const,
      shape: `B=${B},H=${H},T=${T},D=${D}`,
      causal,
      backend: be.name,
      adapter: be.adapter,
      config,
    };
    out.push({ ...base, pass: "forward", ms: msF, gflops: fwdFlops / msF / 1e6 });
    out.push({ ...base, pass: "forward+backward", ms: msFB, gflops: 3.5 * fwdFlops / msFB / 1e6 });
    for (const t of [q, k, v, dout, o, lse, dq, dk, dv]) t.dispose();
  }
  return out;
}

if (import.meta.main) {
  const values = parseFlags("bench", Deno.args, {
    T: { type: "string" },
    reps: { type: "int", min: 1 },
    kernels: { type: "string", choices: ["tile", "reg", "tex"] },
  });
  const fam = values.kernels;
  let kernels: AttentionOptions["kernels"];
  if (fam === "tile") {
    kernels = { forward: { family: "tile" }, dq: { family: "tile" }, dkv: { family: "tile" } };
  } else if (fam) {
    const be0 = await createBackend("webgpu");
    const base = attentionConfigFor(be0.device);
    const as = (c: typeof base.forward) =>
      c.family === "tile" ? { family: fam as "reg", rows: 4, bk: 1, wg: 32 } : { ...c, family: fam as "reg" };
    kernels = { forward: as(base.forward), dq: as(base.dq), dkv: as(base.dkv) };
    be0.destroy();
  }
  const recs = await benchAttention({
    T: values.T?.split(",").map(Number),
    reps: values.reps,
    kernels,
  });
  for (const r of recs) console.log(JSON.stringify(r));
  console.error(`${recs[0]?.adapter}: ${recs[0]?.config}`);
  console.error(
    recs.map((r) =>
      `${r.pass.padEnd(17)} ${r.shape.padEnd(24)} ${r.ms.toFixed(1).padStart(9)} ms ${
        r.gflops.toFixed(2).padStart(7)
      } GFLOP/s`
    ).join("\n"),
  );
}
