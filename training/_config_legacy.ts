/**
 * Private to the `training/` config files: a config of another tool read as `TrainingConfig`
 * fields, with one printed line per key (`old: value -> new: value (why)`), by the rules of
 * `_config_legacy_rules.ts`. Keys fledge already names pass through as themselves; an unknown key is
 * an error naming it (with the closest known key), never dropped.
 * @module
 */
import { closest, isObject, Problems, show } from "../util/problems.ts";
import { PRESETS } from "../models/config.ts";
import { ALIAS_KEYS, LEGACY_KEYS, TOP_SPECS } from "./_config_schema.ts";
import {
  ENGINE,
  type LegacyFormat,
  NANOGPT,
  type Rule,
  SECTIONS,
  type Sink,
} from "./_config_legacy_rules.ts";

export type { LegacyFormat };

/** A migrated config: its formats, the fields in fledge's names and one line per source key. */
export interface LegacyMapped {
  /** The formats recognised (`nanoGPT`, `LLMBuilder`, ...), in the order first seen. */
  formats: LegacyFormat[];
  /** TrainingConfig fields (`model_config` holds the model shape), not yet validated. */
  config: Record<string, unknown>;
  /** One line per source key (and per implied setting), in file order. */
  mapping: string[];
}

const FLEDGE_KEYS = new Set([
  ...Object.keys(TOP_SPECS),
  ...Object.keys(LEGACY_KEYS),
  ...Object.keys(ALIAS_KEYS),
]);
const FLAT: Readonly<Record<string, [LegacyFormat, Rule]>> = Object.fromEntries([
  ...Object.entries(NANOGPT).map(([k, r]) => [k, ["nanoGPT", r]]),
  ...Object.entries(ENGINE).map(([k, r]) => [k, ["engine seed", r]]),
]);

/**
 * True when `obj` is another tool's config: a `model`, `training`, `data`, `system` or `backend`
 * mapping, or a top-level key of nanoGPT or the engine seed that fledge does not name itself.
 */
export function isLegacyConfig(obj: unknown): boolean {
  if (!isObject(obj)) return false;
  return Object.entries(obj).some(([k, v]) =>
    (Object.hasOwn(SECTIONS, k) && isObject(v)) || (Object.hasOwn(FLAT, k) && !FLEDGE_KEYS.has(k))
  );
}

const modelKey = (t: string) => t.startsWith("model_config.") ? t.slice("model_config.".length) : null;
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const pairs = (t: [string, unknown][]) => t.map(([k, v]) => `${k}: ${show(v)}`).join(", ");

class Mapper {
  readonly fields: Record<string, unknown> = {};
  readonly model: Record<string, unknown> = {};
  readonly lines: string[] = [];
  readonly p = new Problems();
  readonly formats = new Set<LegacyFormat>();
  readonly #by = new Map<string, string>();
  readonly #soft: { key: string; v: unknown; target: string; value: unknown; line: number }[] = [];
  constructor(readonly src: Record<string, unknown>, readonly scratch: boolean) {}

  #get(t: string): unknown {
    const m = modelKey(t);
    return m === null ? this.fields[t] : this.model[m];
  }

  set(key: string, target: string, value: unknown): void {
    const other = this.#by.get(target);
    if (other !== undefined && other !== key && !same(this.#get(target), value)) {
      this.p.range(
        key,
        `sets ${target} to ${show(value)}, but ${other} sets it to ${show(this.#get(target))}; keep one`,
      );
      return;
    }
    this.#by.set(target, key);
    const m = modelKey(target);
    if (m === null) this.fields[target] = structuredClone(value);
    else this.model[m] = structuredClone(value);
  }

  sink(section: Record<string, unknown>): Sink {
    const line = (k: string, v: unknown, rest: string, note?: string) =>
      this.lines.push(`${k}: ${show(v)} -> ${rest}${note ? ` (${note})` : ""}`);
    return {
      src: this.src,
      section,
      scratch: this.scratch,
      to: (k, v, targets, note) => {
        for (const [t, x] of targets) this.set(k, t, x);
        line(k, v, pairs(targets), note);
      },
      soft: (k, v, targets, note) => {
        for (const [t, x] of targets) {
          this.#soft.push({ key: k, v, target: t, value: x, line: this.lines.length });
        }
        line(k, v, pairs(targets), note);
      },
      noop: (k, v, why) => line(k, v, `no-op: ${why}`),
      refuse: (k, why) => this.p.range(k, why),
    };
  }

  /** Defaults that yield to any key setting the same target. */
  applySoft(): void {
    for (const s of this.#soft) {
      const by = this.#by.get(s.target);
      if (by === undefined) this.set(s.key, s.target, s.value);
      else this.lines[s.line] = `${s.key}: ${show(s.v)} -> no-op: ${by} sets ${s.target}`;
    }
  }
}

/** Read `obj` (another tool's config) as TrainingConfig fields; throws one error listing every problem. */
export function migrateLegacy(
  obj: Record<string, unknown>,
  opts: { file: string; line?: (key: string) => number | undefined },
): LegacyMapped {
  const init = obj.init_from, model = obj.model;
  const checkpoint = (typeof init === "string" && init !== "scratch" && init !== "resume") ||
    (typeof model === "string" && !Object.hasOwn(PRESETS, model));
  const m = new Mapper(obj, !checkpoint);
  const top = m.sink(obj);
  const unknownTop: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    const section = Object.hasOwn(SECTIONS, k) ? SECTIONS[k] : undefined;
    if (section && isObject(v)) {
      m.formats.add(section.format);
      const s = m.sink(v);
      for (const [sub, x] of Object.entries(v)) {
        const rule = Object.hasOwn(section.rules, sub) ? section.rules[sub] : undefined;
        if (rule) rule(s, `${k}.${sub}`, x);
        else unknown(m.p, `${k}.${sub}`, Object.keys(section.rules), `${section.format} ${k} section`);
      }
    } else if (Object.hasOwn(FLAT, k)) {
      const [format, rule] = FLAT[k];
      if (!FLEDGE_KEYS.has(k)) m.formats.add(format);
      rule(top, k, v);
    } else if (Object.hasOwn(LEGACY_KEYS, k) || Object.hasOwn(ALIAS_KEYS, k)) {
      const { to, note } = LEGACY_KEYS[k] ?? ALIAS_KEYS[k];
      top.to(k, v, [[to, v]], note);
    } else if (k === "model_config" && isObject(v)) {
      top.to(k, v, Object.entries(v).map(([f, x]) => [`model_config.${f}`, x]));
    } else if (Object.hasOwn(TOP_SPECS, k)) {
      top.to(k, v, [[k, v]]);
    } else unknownTop.push(k);
  }
  // A file of fledge's own names with a typo is a training config, not another tool's (the message
  // had called every such file "a legacy config")
  const legacy = m.formats.size > 0;
  for (const k of unknownTop) {
    if (legacy) unknown(m.p, k, [...Object.keys(FLAT), ...FLEDGE_KEYS], "legacy config");
    else {
      const hint = closest(k, Object.keys(TOP_SPECS));
      m.p.type(
        k,
        `unknown key${hint ? `; did you mean ${hint}?` : ""} (see TrainingConfig in training/config.ts)`,
      );
    }
  }
  m.applySoft();
  finishModel(m);
  if (Object.keys(m.model).length > 0) m.fields.model_config = m.model;
  m.p.throwIfAny(legacy ? "Cannot migrate the legacy config" : "Invalid training config", opts.file, {
    locate: true,
    line: opts.line,
  });
  return { formats: [...m.formats], config: m.fields, mapping: m.lines };
}

function unknown(p: Problems, key: string, known: Iterable<string>, what: string): void {
  const hint = closest(key.split(".").pop()!, known);
  p.type(
    key,
    `unknown key in a ${what}: fledge has no mapping for it${hint ? ` (did you mean ${hint}?)` : ""}; ` +
      `remove it or replace it with a TrainingConfig field (training/config.ts)`,
  );
}

/**
 * The model a legacy shape reshapes: GPT-2's architecture built from scratch (nanoGPT's and
 * LLMBuilder's GPT: LayerNorm, learned positions, an nn.GELU MLP, biases); special token ids
 * moved into a smaller vocabulary.
 */
function finishModel(m: Mapper): void {
  const gpt = m.formats.has("nanoGPT") || m.formats.has("LLMBuilder");
  if (!gpt || !m.scratch || Object.keys(m.model).length === 0) return;
  const implied: [string, unknown][] = [];
  if (m.fields.model === undefined) implied.push(["model", "gpt2-124m"]);
  const base = (m.fields.model ?? "gpt2-124m") as keyof typeof PRESETS;
  if (base === "gpt2-124m" && m.model.hidden_act === undefined) {
    implied.push(["model_config.hidden_act", "gelu"]);
  }
  const vocab = m.model.vocab_size;
  const preset = PRESETS[base];
  if (preset && typeof vocab === "number") {
    for (const k of ["bos_token_id", "eos_token_id"] as const) {
      const id = preset[k];
      if (m.model[k] === undefined && typeof id === "number" && id >= vocab) {
        implied.push([`model_config.${k}`, 0]);
      }
    }
  }
  if (!implied.length) return;
  const from = [...m.formats].filter((f) => f === "nanoGPT" || f === "LLMBuilder").join(" + ");
  const key = `(${from} GPT architecture)`;
  for (const [t, x] of implied) m.set(key, t, x);
  m.lines.push(
    `${key} -> ${pairs(implied)} (GPT-2's architecture from random weights: LayerNorm, learned positions, ` +
      `an nn.GELU MLP, biases` +
      (implied.some(([k]) => k.endsWith("_token_id"))
        ? `; <|endoftext|> is id 0 of the tokenizer trained from scratch, inside vocab_size ${vocab})`
        : ")"),
  );
}
