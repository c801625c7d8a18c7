/**
 * Validation at the boundary: a problem list that collects every failure of a config or file
 * before one error is thrown (so a user fixes them all in one go), message helpers for untrusted
 * values, and "did you mean" hints. Every config of fledge (model, training, PEFT, generation)
 * validates through it.
 * @module
 */

/** One validation failure: `type` problems (wrong kind of value) win over `range` ones. */
export interface Problem {
  kind: "type" | "range";
  /** Key path, e.g. `rope_scaling.factor`. */
  key: string;
  /** What is wrong and how to fix it. */
  message: string;
}

/**
 * Collects problems; {@linkcode Problems.throwIfAny} raises one error listing all of them.
 * @example
 * ```ts
 * import { Problems } from "./problems.ts";
 * const p = new Problems();
 * p.range("learning_rate", "must be > 0, got -1");
 * p.type("seed", "expected an integer, got \"x\"");
 * try {
 *   p.throwIfAny("Cannot load the config", "run.yaml");
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof TypeError) || !e.message.includes("2 problems")) throw e;
 * }
 * ```
 */
export class Problems {
  /** The problems so far, in the order found. */
  readonly list: Problem[] = [];

  /** Record a problem with the kind of a value (thrown as a TypeError). */
  type(key: string, message: string): void {
    this.list.push({ kind: "type", key, message });
  }

  /** Record a value out of range (thrown as a RangeError unless a type problem exists). */
  range(key: string, message: string): void {
    this.list.push({ kind: "range", key, message });
  }

  /**
   * Throw a TypeError (any type problem) or RangeError naming `what`, `where` and each problem.
   * With `locate`, each problem line also starts with `where` (or `where:line` when `line(key)`
   * gives the 1-based line of a key path in the file).
   */
  throwIfAny(
    what: string,
    where: string,
    opts: { locate?: boolean; line?: (key: string) => number | undefined } = {},
  ): void {
    if (this.list.length === 0) return;
    const n = this.list.length;
    const at = (key: string) => {
      if (!opts.locate) return "";
      const l = opts.line?.(key);
      return `${l === undefined ? where : `${where}:${l}`}: `;
    };
    const lines = this.list.map((p) => `  - ${at(p.key)}${p.key}: ${p.message}`).join("\n");
    const msg = `${what} in ${where}: ${n} problem${n === 1 ? "" : "s"}:\n${lines}`;
    throw this.list.some((p) => p.kind === "type") ? new TypeError(msg) : new RangeError(msg);
  }
}

/** `JSON.stringify` for messages, with `undefined` spelled out and long values cut. */
export function show(v: unknown): string {
  if (v === undefined) return "undefined";
  if (typeof v === "number" || typeof v === "boolean" || v === null) return String(v);
  try {
    const s = JSON.stringify(v);
    return s.length > 80 ? s.slice(0, 77) + "..." : s;
  } catch {
    return String(v);
  }
}

/**
 * The words that agree with how many things a message names: `is`/`are`, `it`/`them` and the
 * verb ending `s` (`maps`/`map`), so that a one-line error reads right for one field or several.
 * @example
 * ```ts
 * import { agree } from "./problems.ts";
 * const set = ["--top_k", "--top_p"], a = agree(set);
 * if (`${set.join(", ")} ${a.is} for sampling; drop ${a.it}` !== "--top_k, --top_p are for sampling; drop them") {
 *   throw new Error("plural");
 * }
 * if (agree(["--seed"]).it !== "it") throw new Error("singular");
 * ```
 */
export function agree(items: readonly unknown[]): { is: "is" | "are"; it: "it" | "them"; s: "s" | "" } {
  return items.length > 1 ? { is: "are", it: "them", s: "" } : { is: "is", it: "it", s: "s" };
}

/**
 * Refuse an option that must be a boolean and is not (a YAML or CLI `"false"` is truthy, so it
 * would switch the option on): a TypeError `<what>: <key> must be true or false, got <value>`.
 * Unset keys pass.
 * @example
 * ```ts
 * import { checkBooleans } from "./problems.ts";
 * checkBooleans({ lowercase: true }, ["lowercase", "whitespace"], "Cannot compute chrF");
 * try {
 *   checkBooleans({ lowercase: "false" }, ["lowercase"], "Cannot compute chrF");
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof TypeError) || !e.message.endsWith(`lowercase must be true or false, got "false"`)) throw e;
 * }
 * ```
 */
export function checkBooleans(o: object, keys: readonly string[], what: string): void {
  for (const k of keys) {
    const v = (o as Record<string, unknown>)[k];
    if (v !== undefined && typeof v !== "boolean") {
      throw new TypeError(`${what}: ${k} must be true or false, got ${show(v)}`);
    }
  }
}

/** True for a plain (non-array, non-null) object. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Closest candidate by edit distance (for "did you mean" hints), or undefined when none is close. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined, bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.max(2, Math.floor(word.length / 4)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
