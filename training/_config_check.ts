/**
 * Private helpers of `config.ts` and `schedule.ts`: small typed field specs checked into the
 * problem list of `util/problems.ts`, and unknown-key checks with "did you mean" hints.
 * @module
 */
import { closest, type Problems, show } from "../util/problems.ts";

/** What a field accepts. `nullable` adds `null`; bounds are inclusive unless `*Exclusive`. */
export type Spec =
  | { kind: "int"; min?: number; max?: number; nullable?: boolean; also?: readonly number[] }
  | {
    kind: "number";
    min?: number;
    max?: number;
    minExclusive?: boolean;
    maxExclusive?: boolean;
    nullable?: boolean;
  }
  | { kind: "bool"; nullable?: boolean }
  | { kind: "string"; nullable?: boolean }
  | { kind: "enum"; values: readonly string[]; nullable?: boolean }
  | { kind: "strings"; nullable?: boolean; also?: readonly string[] };

/** A short phrase for the expected value of `spec`, used in type messages. */
export function describe(spec: Spec): string {
  const orNull = "nullable" in spec && spec.nullable ? " or null" : "";
  switch (spec.kind) {
    case "int":
      return `an integer${orNull}`;
    case "number":
      return `a number${orNull}`;
    case "bool":
      return `true or false${orNull}`;
    case "string":
      return `a string${orNull}`;
    case "enum":
      return `one of ${spec.values.map((v) => `"${v}"`).join(", ")}${orNull}`;
    case "strings":
      return `a list of strings${
        spec.also ? ` or ${spec.also.map((v) => `"${v}"`).join(", ")}` : ""
      }${orNull}`;
  }
}

/**
 * Check one value against its spec, pushing at most one problem. Returns true when the value is
 * well typed (range problems may still have been pushed), so callers can skip dependent checks.
 */
export function checkValue(p: Problems, key: string, v: unknown, spec: Spec): boolean {
  if (v === null && "nullable" in spec && spec.nullable) return true;
  const quotedNumber = typeof v === "string" && v.trim() !== "" && Number.isFinite(Number(v));
  const numberHint = quotedNumber ? ` (write ${v.trim()} without quotes so it reads as a number)` : "";
  switch (spec.kind) {
    case "int": {
      if (typeof v !== "number" || !Number.isFinite(v)) {
        p.type(key, `expected ${describe(spec)}, got ${show(v)}${numberHint}`);
        return false;
      }
      if (!Number.isSafeInteger(v)) {
        p.type(key, `expected ${describe(spec)}, got ${v} (round it to a whole number)`);
        return false;
      }
      if (spec.also?.includes(v)) return true;
      rangeCheck(p, key, v, spec.min, spec.max, false, false, spec.also);
      return true;
    }
    case "number": {
      if (typeof v !== "number" || !Number.isFinite(v)) {
        p.type(key, `expected ${describe(spec)}, got ${show(v)}${numberHint}`);
        return false;
      }
      rangeCheck(p, key, v, spec.min, spec.max, spec.minExclusive, spec.maxExclusive);
      return true;
    }
    case "bool":
      if (typeof v !== "boolean") {
        const hint = v === "true" || v === "false" ? ` (write ${v} without quotes)` : "";
        p.type(key, `expected true or false, got ${show(v)}${hint}`);
        return false;
      }
      return true;
    case "string":
      if (typeof v !== "string" || v.trim() === "") {
        p.type(key, `expected a non-empty ${describe(spec).replace(/^a /, "")}, got ${show(v)}`);
        return false;
      }
      return true;
    case "enum":
      if (typeof v !== "string" || !spec.values.includes(v)) {
        const hint = typeof v === "string" ? closest(v, spec.values) : undefined;
        const mean = hint ? `; did you mean "${hint}"?` : "";
        (typeof v === "string" ? p.range : p.type).call(
          p,
          key,
          `expected ${describe(spec)}, got ${show(v)}${mean}`,
        );
        return false;
      }
      return true;
    case "strings":
      if (typeof v === "string" && spec.also?.includes(v)) return true;
      if (!Array.isArray(v) || v.length === 0 || !v.every((s) => typeof s === "string" && s !== "")) {
        p.type(key, `expected ${describe(spec).replace("a list", "a non-empty list")}, got ${show(v)}`);
        return false;
      }
      return true;
  }
}

function rangeCheck(
  p: Problems,
  key: string,
  v: number,
  min: number | undefined,
  max: number | undefined,
  minEx = false,
  maxEx = false,
  also?: readonly number[],
): void {
  const lowOk = min === undefined || (minEx ? v > min : v >= min);
  const highOk = max === undefined || (maxEx ? v < max : v <= max);
  if (lowOk && highOk) return;
  const lo = min === undefined ? "" : `${minEx ? ">" : ">="} ${min}`;
  const hi = max === undefined ? "" : `${maxEx ? "<" : "<="} ${max}`;
  const extra = also?.length ? ` (or ${also.join(", ")})` : "";
  p.range(key, `must be ${[lo, hi].filter((s) => s).join(" and ")}${extra}, got ${v}`);
}

/**
 * Report keys of `obj` that are not in `known`: an explicit hint (a name from another tool) wins,
 * then the closest known key by edit distance.
 */
export function checkUnknownKeys(
  p: Problems,
  obj: Record<string, unknown>,
  known: readonly string[],
  opts: { prefix: string; hints?: Readonly<Record<string, string>>; what: string },
): void {
  for (const k of Object.keys(obj)) {
    if (known.includes(k)) continue;
    const hint = (opts.hints && Object.hasOwn(opts.hints, k) ? opts.hints[k] : undefined) ??
      closest(k, known);
    const mean = hint ? `; did you mean ${hint}?` : "";
    p.type(`${opts.prefix}${k}`, `unknown key${mean} (rename or remove it; ${opts.what})`);
  }
}
