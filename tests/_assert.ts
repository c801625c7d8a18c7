/**
 * Small assertion helpers shared by the test suite (on top of `node:assert/strict`).
 * @module
 */
import assert from "node:assert/strict";
import { mulberry32 } from "../util/random.ts";

export { assert };

/** Repository root (absolute, no trailing slash), derived from this file's URL. */
export const ROOT: string = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The `../shared` folder beside the checkout (test fixtures and datasets); env `FLEDGE_SHARED`. */
export const SHARED: string = Deno.env.get("FLEDGE_SHARED") ?? `${ROOT}/../shared`;
// The library finds the Debian data by FLEDGE_DEBIAN_DATA, else beside the checkout: a shared folder
// named by FLEDGE_SHARED holds it too (in-process and in the commands the tests start).
if (Deno.env.get("FLEDGE_SHARED") && !Deno.env.get("FLEDGE_DEBIAN_DATA")) {
  Deno.env.set("FLEDGE_DEBIAN_DATA", `${SHARED}/datasets/debian`);
}

/**
 * The architectures of `../shared/fixtures/hf-reference`: every folder there with a `config.json`,
 * sorted, so a fixture dropped beside the others is tested with no code change.
 */
export const FIXTURE_ARCHES: readonly string[] = (() => {
  const root = `${SHARED}/fixtures/hf-reference`;
  try {
    return [...Deno.readDirSync(root)]
      .filter((e) =>
        e.isDirectory && [...Deno.readDirSync(`${root}/${e.name}`)].some((f) => f.name === "config.json")
      )
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
})();

/** True when slow end-to-end tests are requested (`deno task test:slow`). */
export const SLOW: boolean = Deno.env.get("FLEDGE_SLOW") === "1";

/** Assert `|actual - expected| <= atol + rtol * |expected|` for two numbers. */
export function assertClose(
  actual: number,
  expected: number,
  opts: { atol?: number; rtol?: number; msg?: string } = {},
): void {
  const atol = opts.atol ?? 0;
  const rtol = opts.rtol ?? 0;
  const tol = atol + rtol * Math.abs(expected);
  if (!(Math.abs(actual - expected) <= tol) && !(Number.isNaN(actual) && Number.isNaN(expected))) {
    throw new assert.AssertionError({
      message: `${opts.msg ? opts.msg + ": " : ""}expected ${expected}, got ${actual} (|diff| ${
        Math.abs(actual - expected)
      } > tol ${tol})`,
      actual,
      expected,
    });
  }
}

/** Result of {@linkcode compareArrays}: the worst element and the error norms. */
export interface Comparison {
  maxAbs: number;
  maxRel: number;
  worstIndex: number;
  worstActual: number;
  worstExpected: number;
}

/**
 * Compare two numeric arrays elementwise with `|a - e| <= atol + rtol * |e|` and throw with the
 * worst element (index, both values, absolute and relative error) when any element fails.
 * Returns the error summary so callers can report it.
 */
export function assertAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  opts: { atol?: number; rtol?: number; msg?: string } = {},
): Comparison {
  const atol = opts.atol ?? 1e-5;
  const rtol = opts.rtol ?? 1e-5;
  const label = opts.msg ? opts.msg + ": " : "";
  if (actual.length !== expected.length) {
    throw new assert.AssertionError({
      message: `${label}length ${actual.length} != expected length ${expected.length}`,
    });
  }
  let worst = -1, worstExcess = -Infinity, maxAbs = 0, maxRel = 0, scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    const d = Math.abs(a - e);
    const bad = !(d <= atol + rtol * Math.abs(e)) && !(Number.isNaN(a) && Number.isNaN(e)) && a !== e;
    if (Number.isFinite(d)) {
      maxAbs = Math.max(maxAbs, d);
      maxRel = Math.max(maxRel, d / Math.max(Math.abs(e), 1e-30));
    }
    const excess = bad ? (Number.isFinite(d) ? d - (atol + rtol * Math.abs(e)) : Infinity) : -1;
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = i;
    }
  }
  const cmp: Comparison = {
    maxAbs,
    maxRel,
    worstIndex: worst,
    worstActual: worst >= 0 ? actual[worst] : NaN,
    worstExpected: worst >= 0 ? expected[worst] : NaN,
  };
  if (worstExcess > 0 || worstExcess === Infinity) {
    throw new assert.AssertionError({
      message: `${label}mismatch at index ${worst}: got ${cmp.worstActual}, expected ${cmp.worstExpected} ` +
        `(max abs err ${maxAbs.toExponential(2)}, max |ref| ${
          scale.toExponential(2)
        }, atol ${atol}, rtol ${rtol})`,
    });
  }
  return cmp;
}

/** A tiny seeded PRNG (mulberry32) for reproducible test inputs. */
export function rng(seed: number): () => number {
  return mulberry32(seed);
}

/** `n` uniform values in [-scale, scale), never exactly zero. */
export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = (r() * 2 - 1) * scale;
    if (v === 0) v = scale * 1e-3;
    out[i] = v;
  }
  return out;
}

/** The error `f` throws, to assert on its class and message; fails the test when it throws none. */
export function caught(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new assert.AssertionError({ message: "expected an error" });
}
