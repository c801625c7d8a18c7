/**
 * Shared helpers for kernel tests: the backends under test, WGSL-vs-reference comparison, and
 * finite-difference gradient checks in f64.
 * @module
 */
import { type Backend, createBackend } from "../kernels/backend.ts";
import type { Tensor } from "../kernels/tensor.ts";
import { assertAllClose, type Comparison, rng } from "./_assert.ts";

let cpuP: Promise<Backend> | null = null;
let gpuP: Promise<Backend | null> | null = null;

/** The cpu backend (one per test module). */
export function cpu(): Promise<Backend> {
  return cpuP ??= createBackend("cpu");
}

/**
 * The webgpu backend, or null when no adapter exists (tests then say so and check cpu only).
 * `FLEDGE_TEST_WEBGPU=0` skips it; `FLEDGE_REQUIRE_WEBGPU=1` (set by CI) makes a missing adapter
 * fail the test instead, so the GPU comparisons can never pass as no-ops.
 */
export function webgpu(): Promise<Backend | null> {
  if (Deno.env.get("FLEDGE_TEST_WEBGPU") === "0") return Promise.resolve(null);
  return gpuP ??= createBackend("webgpu").catch((e) => {
    if (Deno.env.get("FLEDGE_REQUIRE_WEBGPU") === "1") {
      throw new Error(`FLEDGE_REQUIRE_WEBGPU=1 but no WebGPU adapter: ${(e as Error).message}`);
    }
    console.error(`webgpu backend unavailable: ${(e as Error).message}`);
    return null;
  });
}

/** Both backends that are available: cpu first. */
export async function backends(): Promise<Backend[]> {
  const g = await webgpu();
  return g ? [await cpu(), g] : [await cpu()];
}

/** Upload the same host data to a backend. */
export function upload(b: Backend, data: ArrayLike<number>, shape: readonly number[]): Tensor {
  return b.fromArray(data, shape);
}

/**
 * Run `build` on the cpu backend and on webgpu (when present) and compare every returned tensor;
 * returns the comparisons (webgpu vs cpu). The worst element is printed on failure.
 */
export async function compareBackends(
  label: string,
  build: (b: Backend) => Tensor[] | Promise<Tensor[]>,
  tol: { atol?: number; rtol?: number } = {},
): Promise<Comparison[]> {
  const c = await cpu();
  const g = await webgpu();
  const ref = await build(c);
  const refArr = await Promise.all(ref.map((t) => t.toArray()));
  if (!g) return [];
  const got = await build(g);
  const out: Comparison[] = [];
  for (let i = 0; i < got.length; i++) {
    const arr = await got[i].toArray();
    out.push(
      assertAllClose(arr, refArr[i], {
        atol: tol.atol ?? 1e-5,
        rtol: tol.rtol ?? 1e-4,
        msg: `${label} output ${i}`,
      }),
    );
    got[i].dispose();
  }
  return out;
}

/**
 * Finite-difference check in f64: `f(inputs)` returns a scalar-valued function of the inputs
 * (typically sum(w * forward(x)) for a fixed random w); `grads(inputs)` returns the analytic
 * gradients. Checks `count` random coordinates of every input with central differences.
 */
export function gradcheck(
  label: string,
  f: (xs: Float64Array[]) => number,
  grads: (xs: Float64Array[]) => Float64Array[],
  inputs: Float64Array[],
  opts: { eps?: number; atol?: number; rtol?: number; count?: number; seed?: number } = {},
): void {
  const eps = opts.eps ?? 1e-6, count = opts.count ?? 24, r = rng(opts.seed ?? 7);
  const analytic = grads(inputs.map((x) => x.slice()));
  inputs.forEach((x, k) => {
    const n = Math.min(count, x.length);
    const idx = n === x.length ? [...x.keys()] : Array.from({ length: n }, () => Math.floor(r() * x.length));
    const num: number[] = [], ana: number[] = [];
    for (const i of idx) {
      const xs = inputs.map((y) => y.slice());
      xs[k][i] = x[i] + eps;
      const fp = f(xs);
      xs[k][i] = x[i] - eps;
      const fm = f(xs);
      num.push((fp - fm) / (2 * eps));
      ana.push(analytic[k][i]);
    }
    assertAllClose(ana, num, {
      atol: opts.atol ?? 1e-6,
      rtol: opts.rtol ?? 1e-5,
      msg: `${label}: d/d input ${k}`,
    });
  });
}

/** Deterministic random f64 values in [-1, 1) (never zero). */
export function rand64(n: number, seed: number, scale = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = ((r() * 2 - 1) || 1e-3) * scale;
  return out;
}

/** Dot product (f64) used to make a scalar from an output: sum(w * y). */
export function dot(w: ArrayLike<number>, y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += w[i] * y[i];
  return s;
}
