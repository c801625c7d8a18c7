/**
 * Formatting of numbers, byte counts and durations for progress lines, logs and reports: one
 * spelling everywhere.
 *
 * @module
 */

/**
 * A byte count in decimal units, as huggingface_hub's progress bars print it.
 * @param n bytes
 * @returns `312 B`, `1.5 MB`, `2.0 GB`
 * @example
 * ```ts
 * import { formatBytes } from "./format.ts";
 * if (formatBytes(1_500_000) !== "1.5 MB" || formatBytes(312) !== "312 B") throw new Error();
 * ```
 */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${Math.round(n)} B` : `${n.toFixed(1)} ${units[i]}`;
}

/**
 * A duration for progress lines and summaries, rounded to whole seconds.
 * @param s seconds (non-finite: `?`)
 * @returns `12s`, `3m05s`, `1h02m`
 * @example
 * ```ts
 * import { formatDuration } from "./format.ts";
 * if (formatDuration(185) !== "3m05s" || formatDuration(3720) !== "1h02m") throw new Error();
 * ```
 */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  s = Math.max(0, Math.round(s));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

/**
 * A metric value for logs and reports: integers as they are, tiny magnitudes in exponent form,
 * others with `digits` decimals.
 * @param v the value (null or non-number: empty string)
 * @param digits decimals (default 4)
 * @returns e.g. `200`, `0.1234`, `3.000e-4`
 * @example
 * ```ts
 * import { formatMetric } from "./format.ts";
 * if (formatMetric(200) !== "200" || formatMetric(0.12345) !== "0.1235" || formatMetric(3e-4) !== "3.000e-4") {
 *   throw new Error();
 * }
 * ```
 */
export function formatMetric(v: unknown, digits = 4): string {
  if (typeof v !== "number") return "";
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(3) : v.toFixed(digits);
}

/**
 * The message of an error and of the causes below it that say more (Deno's fetch fails with
 * "fetch failed" and keeps "tcp connect error: Connection refused" in `cause`).
 *
 * @example
 * ```ts
 * import { errorChain } from "./format.ts";
 * const e = new TypeError("fetch failed", { cause: new Error("connection refused") });
 * if (errorChain(e) !== "fetch failed: connection refused") throw new Error(errorChain(e));
 * ```
 */
export function errorChain(e: unknown): string {
  const parts: string[] = [];
  for (let c: unknown = e, i = 0; c !== undefined && c !== null && i < 4; i++) {
    const m = c instanceof Error ? c.message : String(c);
    if (m && !parts.some((p) => p.includes(m))) parts.push(m);
    c = c instanceof Error ? c.cause : undefined;
  }
  return parts.join(": ");
}
