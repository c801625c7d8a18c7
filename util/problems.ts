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

/**
 * Refuse a path argument that is not a non-empty string (a `URL`, `undefined`, a model passed where
 * the folder goes), before `node:path` throws its own message from deep inside.
 * @param path the argument
 * @param fn the function, named in the message
 * @param name the argument's name (default `path`)
 * @throws {TypeError} `<fn>: <name> must be a path string, got <value>`, with a fix for a URL
 * @example
 * ```ts
 * import { checkPathArg } from "./problems.ts";
 * checkPathArg("runs/x", "loadModel");
 * let msg = "";
 * try {
 *   checkPathArg(new URL("file:///tmp/x"), "loadModel", "dir");
 * } catch (e) {
 *   msg = (e as Error).message;
 * }
 * if (!msg.startsWith("loadModel: dir must be a path string, got a URL")) throw new Error(msg);
 * ```
 */
export function checkPathArg(path: unknown, fn: string, name = "path"): asserts path is string {
  if (typeof path === "string" && path !== "") return;
  const got = path instanceof URL
    ? `a URL (${path.href}); pass its path, fileURLToPath(url) from node:url`
    : typeof path === "object" && path !== null
    ? `a ${path.constructor?.name ?? "object"} (are the arguments in the right order?)`
    : show(path);
  throw new TypeError(`${fn}: ${name} must be a path string, got ${got}`);
}

/**
 * Refuse the keys of an options object that a function does not read: a misspelt option
 * (`maxNewTokens`, `use_stemer`) would otherwise be dropped without a word and the call would run
 * on its defaults. Undefined values count too (`{ max_sample: undefined }` is still a typo).
 * @param opts the options given (anything that is not a plain object is left to the caller's checks)
 * @param known the option names the function reads
 * @param fn the function, named in the message (e.g. `"rougeScore"`)
 * @throws {TypeError} one line naming each unknown key, a "did you mean" and the options there are
 * @example
 * ```ts
 * import { refuseUnknownOptions } from "./problems.ts";
 * refuseUnknownOptions({ max_samples: 2 }, ["max_samples", "split"], "readDataset");
 * let msg = "";
 * try {
 *   refuseUnknownOptions({ maxSamples: 2 }, ["max_samples", "split"], "readDataset");
 * } catch (e) {
 *   msg = (e as Error).message;
 * }
 * if (!msg.includes("did you mean max_samples?")) throw new Error(msg);
 * ```
 */
export function refuseUnknownOptions(opts: unknown, known: Iterable<string>, fn: string): void {
  if (!isObject(opts)) return;
  const names = [...known], set = new Set(names);
  const bad = Object.keys(opts).filter((k) => !set.has(k));
  if (!bad.length) return;
  const snake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  const hint = (k: string) => {
    const part = k.length >= 4 ? names.find((n) => n.includes(k) || k.includes(n)) : undefined;
    const near = set.has(snake(k)) ? snake(k) : closest(k, names) ?? part;
    return near ? ` (did you mean ${near}?)` : "";
  };
  const { is } = agree(bad);
  throw new TypeError(
    `${fn}: ${bad.map((k) => `${JSON.stringify(k)}${hint(k)}`).join(", ")} ${is} not ${
      bad.length === 1 ? "an option" : "options"
    } of ${fn}; its options are ${names.join(", ")}`,
  );
}

/** Closest candidate by edit distance (for "did you mean" hints), or undefined when none is close. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  // a name the word ends or starts (gpu: webgpu, not the nearer cpu), the first such in the
  // candidates' order (batch_size: per_device_train_batch_size, before the eval one)
  const w = word.toLowerCase(), list = [...candidates];
  const edge = w.length >= 3
    ? list.find((c) => c.length > w.length && (c.toLowerCase().endsWith(w) || c.toLowerCase().startsWith(w)))
    : undefined;
  if (edge !== undefined) return edge;
  let best: string | undefined, bestD = Infinity;
  for (const c of list) {
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

/**
 * npm:yaml's error message as one phrase: its first line, without the "at line L, column C" the
 * caller says its own way, and in plain words where the library's advice is for programmers (a
 * second document: "please use YAML.parseAllDocuments()").
 * @example
 * ```ts
 * import { yamlProblem } from "./problems.ts";
 * const p = yamlProblem("Source contains multiple documents; please use YAML.parseAllDocuments()");
 * if (!p.startsWith("it holds more than one YAML document")) throw new Error(p);
 * ```
 */
export function yamlProblem(message: string): string {
  if (/multiple documents/i.test(message)) {
    return "it holds more than one YAML document (a --- line starts another); keep one";
  }
  return message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "").replace(/:$/, "");
}
