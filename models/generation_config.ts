/**
 * Generation settings with Hugging Face `GenerationConfig` names: the typed options, HF's defaults,
 * `generation_config.json` reading (every key mapped explicitly) and the validation that turns
 * options + file + model config into the settings the decode loop runs with.
 *
 * @module
 */
import { join } from "node:path";
import { parseJson } from "../util/json.ts";
import { closest, isObject, Problems, show } from "../util/problems.ts";
import type { ModelConfig } from "./config.ts";

/** The subset of Hugging Face `GenerationConfig` that `generate()` honours (same names, same meaning). */
export interface GenerationConfig {
  /** New tokens to generate (wins over `max_length`). */
  max_new_tokens?: number;
  /** Prompt + new tokens, used only when `max_new_tokens` is unset; HF default 20. */
  max_length?: number;
  /** Sample (true) or take the argmax (false, HF default). */
  do_sample?: boolean;
  /** Must be > 0; divides the logits when sampling. HF default 1. */
  temperature?: number;
  /** Keep the k most likely tokens when sampling; 0 = off. HF default 50. */
  top_k?: number;
  /** Nucleus sampling in (0, 1]; 1 = off (HF default). */
  top_p?: number;
  /** Must be > 0; 1 = off (HF default). HF's CTRL penalty on every id already in the sequence. */
  repetition_penalty?: number;
  /** Stop a row when it emits one of these ids. */
  eos_token_id?: number | number[] | null;
  /** Id used for left padding and for rows that already stopped. */
  pad_token_id?: number | null;
  /** Beginning-of-sequence id (read from the file; prompts are used as given). */
  bos_token_id?: number | null;
  /** Stop a row when its decoded continuation contains one of these (needs a tokenizer). */
  stop_strings?: string | string[] | null;
  /** Beams of beam search; 1 (HF default) = greedy or sampling. Beam search needs `do_sample` false. */
  num_beams?: number;
  /**
   * Beam search: a finished hypothesis scores `sum_logprobs / generated_len ** length_penalty`; > 0
   * favours longer sequences, < 0 shorter ones. HF default 1.
   */
  length_penalty?: number;
  /**
   * Beam search stop rule: `true` once `num_beams` hypotheses finished; `false` (HF default) when
   * HF's heuristic says no running beam can beat the worst finished one; `"never"` only when that
   * is certain (the canonical algorithm).
   */
  early_stopping?: boolean | "never";
  /** Ban any token that would repeat an n-gram of this size already in the sequence; 0 = off (HF default). */
  no_repeat_ngram_size?: number;
  /** Hypotheses returned per prompt (beam search; at most `num_beams`). HF default 1. */
  num_return_sequences?: number;
}

/** Settings after defaults and validation (what the decode loop uses). */
export interface ResolvedGeneration {
  max_new_tokens: number;
  do_sample: boolean;
  temperature: number;
  top_k: number;
  top_p: number;
  repetition_penalty: number;
  eos_token_id: number[];
  pad_token_id: number;
  stop_strings: string[];
  seed: number;
  num_beams: number;
  length_penalty: number;
  early_stopping: boolean | "never";
  no_repeat_ngram_size: number;
  num_return_sequences: number;
}

/** Hugging Face `GenerationConfig()` defaults for the keys we honour. */
export const HF_GENERATION_DEFAULTS: Readonly<{
  max_length: number;
  do_sample: boolean;
  temperature: number;
  top_k: number;
  top_p: number;
  repetition_penalty: number;
  num_beams: number;
  length_penalty: number;
  early_stopping: boolean | "never";
  no_repeat_ngram_size: number;
  num_return_sequences: number;
}> = Object.freeze({
  max_length: 20,
  do_sample: false,
  temperature: 1,
  top_k: 50,
  top_p: 1,
  repetition_penalty: 1,
  num_beams: 1,
  length_penalty: 1,
  early_stopping: false,
  no_repeat_ngram_size: 0,
  num_return_sequences: 1,
});

const SUPPORTED = new Set([
  "max_new_tokens",
  "max_length",
  "do_sample",
  "temperature",
  "top_k",
  "top_p",
  "repetition_penalty",
  "eos_token_id",
  "pad_token_id",
  "bos_token_id",
  "stop_strings",
  "num_beams",
  "length_penalty",
  "early_stopping",
  "no_repeat_ngram_size",
  "num_return_sequences",
]);

/** The options of `generate()` that are not generation config keys. */
const GENERATE_ONLY = new Set(["generation_config", "seed", "tokenizer", "onToken", "streamer"]);

/** Keys without effect on decoding (metadata, outputs, caches, assistant models). */
const NO_EFFECT = new Set([
  "transformers_version",
  "_from_model_config",
  "use_cache",
  "num_assistant_tokens",
  "num_assistant_tokens_schedule",
  "assistant_confidence_threshold",
  "cache_implementation",
  "cache_config",
  "low_memory",
  "decoder_start_token_id",
  "is_assistant",
]);

/** HF features we do not implement: accepted only at their HF default (which turns them off). */
const OFF_AT_DEFAULT: Record<string, unknown[]> = {
  num_beam_groups: [1],
  penalty_alpha: [null],
  typical_p: [1],
  epsilon_cutoff: [0],
  eta_cutoff: [0],
  diversity_penalty: [0],
  encoder_repetition_penalty: [1],
  encoder_no_repeat_ngram_size: [0],
  bad_words_ids: [null],
  force_words_ids: [null],
  renormalize_logits: [false],
  forced_bos_token_id: [null],
  forced_eos_token_id: [null],
  remove_invalid_values: [false],
  exponential_decay_length_penalty: [null],
  suppress_tokens: [null],
  begin_suppress_tokens: [null],
  forced_decoder_ids: [null],
  sequence_bias: [null],
  guidance_scale: [null, 1],
  min_p: [null, 0],
  min_length: [0],
  min_new_tokens: [null, 0],
  max_time: [null],
  watermarking_config: [null],
  dola_layers: [null],
  prompt_lookup_num_tokens: [null],
  max_matching_ngram_size: [null],
  token_healing: [false],
  constraints: [null],
  // generate() returns tokens (and why each row stopped), not HF's output objects
  output_attentions: [false],
  output_hidden_states: [false],
  output_scores: [false],
  output_logits: [false],
  return_dict_in_generate: [false],
};

/** Check the honoured keys of a generation config (types and ranges), adding to `p`. */
function checkValues(cfg: Record<string, unknown>, p: Problems, vocab: number | null): void {
  const int = (k: string, min: number) => {
    const v = cfg[k];
    if (v === undefined || v === null) return;
    if (typeof v !== "number" || !Number.isInteger(v)) p.type(k, `must be an integer, got ${show(v)}`);
    else if (v < min) p.range(k, `must be >= ${min}, got ${v}`);
  };
  const num = (k: string, ok: (x: number) => boolean, rule: string) => {
    const v = cfg[k];
    if (v === undefined || v === null) return;
    if (typeof v !== "number" || Number.isNaN(v)) p.type(k, `must be a number, got ${show(v)}`);
    else if (!ok(v)) p.range(k, `${rule}, got ${v}`);
  };
  int("max_new_tokens", 1);
  int("max_length", 1);
  int("top_k", 0);
  int("num_beams", 1);
  int("num_return_sequences", 1);
  int("no_repeat_ngram_size", 0);
  num("length_penalty", Number.isFinite, "must be a finite number (1 = plain average log-probability)");
  const es = cfg.early_stopping;
  if (es !== undefined && es !== null && es !== true && es !== false && es !== "never") {
    p.type("early_stopping", `must be true, false or "never", got ${show(es)}`);
  }
  num("temperature", (x) => x >= 0 && Number.isFinite(x), "must be >= 0 (and > 0 when sampling)");
  num(
    "top_p",
    (x) => x >= 0 && x <= 1,
    "must be in [0, 1] (HF's TopPLogitsWarper; 0 keeps the likeliest token)",
  );
  num("repetition_penalty", (x) => x > 0 && Number.isFinite(x), "must be > 0 (1 = off)");
  if (cfg.do_sample !== undefined && cfg.do_sample !== null && typeof cfg.do_sample !== "boolean") {
    p.type("do_sample", `must be true or false, got ${show(cfg.do_sample)}`);
  }
  const id = (k: string, v: unknown) => {
    if (typeof v !== "number" || !Number.isInteger(v)) {
      p.type(k, `must be an integer token id, got ${show(v)}`);
    } else if (v < 0 || (vocab !== null && v >= vocab)) {
      p.range(k, `must be in [0, ${vocab ?? "vocab_size"}), got ${v}`);
    }
  };
  for (const k of ["pad_token_id", "bos_token_id"]) {
    if (cfg[k] !== undefined && cfg[k] !== null) id(k, cfg[k]);
  }
  const eos = cfg.eos_token_id;
  if (Array.isArray(eos)) eos.forEach((v, i) => id(`eos_token_id[${i}]`, v));
  else if (eos !== undefined && eos !== null) id("eos_token_id", eos);
  const stop = cfg.stop_strings;
  const stops = typeof stop === "string" ? [stop] : stop;
  if (stops !== undefined && stops !== null) {
    if (!Array.isArray(stops) || stops.some((s) => typeof s !== "string")) {
      p.type("stop_strings", `must be a string or a list of strings, got ${show(stop)}`);
    } else if (stops.some((s) => s === "")) p.range("stop_strings", "must not contain the empty string");
  }
}

/**
 * The generation parameters `PretrainedConfig` still reads from `config.json` (transformers v4.47
 * `_get_global_generation_defaults`; releases before 4.26 saved them there, and hub checkpoints of
 * that time carry them). `GenerationConfig.from_model_config` takes them when a folder has no
 * `generation_config.json`.
 */
const MODEL_CONFIG_KEYS: readonly string[] = [
  "max_length",
  "min_length",
  "do_sample",
  "early_stopping",
  "num_beams",
  "num_beam_groups",
  "diversity_penalty",
  "temperature",
  "top_k",
  "top_p",
  "typical_p",
  "repetition_penalty",
  "length_penalty",
  "no_repeat_ngram_size",
  "encoder_no_repeat_ngram_size",
  "bad_words_ids",
  "num_return_sequences",
  "output_scores",
  "return_dict_in_generate",
  "forced_bos_token_id",
  "forced_eos_token_id",
  "remove_invalid_values",
  "exponential_decay_length_penalty",
  "suppress_tokens",
  "begin_suppress_tokens",
];

/**
 * The generation parameters of a parsed `config.json` ({@linkcode MODEL_CONFIG_KEYS}, nulls dropped
 * as `from_model_config` drops them), unchecked: what HF's generation config takes from the model
 * config when there is no `generation_config.json`.
 */
export function modelConfigGeneration(json: unknown): Record<string, unknown> {
  if (!isObject(json)) return {};
  return Object.fromEntries(
    MODEL_CONFIG_KEYS.flatMap((k) => json[k] === undefined || json[k] === null ? [] : [[k, json[k]]]),
  );
}

/**
 * Read `generation_config.json` from a model folder into a {@linkcode GenerationConfig} (the keys
 * `generate()` honours). Metadata and keys without effect on sampling one sequence are skipped; a
 * feature we do not implement (e.g. `num_beam_groups: 2`) or an unknown key is an error, never silently
 * dropped. A folder without the file gives the generation parameters of its `config.json`, checked
 * the same way (HF's `GenerationConfig.from_model_config`: a checkpoint saved before transformers 4.26
 * keeps `repetition_penalty`, `max_length`, ... there), else `{}`.
 *
 * @param dir the model folder
 * @throws {SyntaxError} when the file is not JSON; {@linkcode TypeError} / {@linkcode RangeError}
 *   listing every bad key (with the file and the fix)
 * @example
 * ```ts
 * import { loadGenerationConfig } from "./generation_config.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/config.json`, '{"model_type": "gpt2", "no_repeat_ngram_size": 3}');
 * if (JSON.stringify(await loadGenerationConfig(dir)) !== '{"no_repeat_ngram_size":3}') throw new Error("config.json");
 * await Deno.writeTextFile(`${dir}/generation_config.json`, '{"eos_token_id": [2, 7], "top_p": 0.9, "transformers_version": "4.47.0"}');
 * const gc = await loadGenerationConfig(dir);
 * if (JSON.stringify(gc) !== '{"eos_token_id":[2,7],"top_p":0.9}') throw new Error(JSON.stringify(gc));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadGenerationConfig(dir: string): Promise<GenerationConfig> {
  for (const name of ["generation_config.json", "config.json"]) {
    const file = join(dir, name);
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      throw e;
    }
    const json = parseJson(text, file);
    return checkGenerationConfig(name === "config.json" ? modelConfigGeneration(json) : json, file);
  }
  return {};
}

/**
 * The checks of {@linkcode loadGenerationConfig} on a parsed `generation_config.json` object (`file`
 * names it in the messages): the keys `generate()` honours, validated; metadata dropped; anything
 * else refused. `saveModel` runs them before it writes one.
 *
 * @throws {SyntaxError} when `json` is not an object; {@linkcode TypeError} / {@linkcode RangeError}
 *   listing every bad key (with `file` and the fix)
 */
export function checkGenerationConfig(
  json: unknown,
  file: string,
  what = "Cannot load the generation config",
): GenerationConfig {
  if (!isObject(json)) {
    throw new SyntaxError(`${what}: ${file} is not a JSON object, got ${show(json)}`);
  }
  const p = new Problems();
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json)) {
    if (SUPPORTED.has(k)) out[k] = v;
    else if (NO_EFFECT.has(k)) continue;
    else if (k in OFF_AT_DEFAULT) {
      // null: unset, HF 5's default of every one of them
      if (v !== null && !OFF_AT_DEFAULT[k].some((d) => JSON.stringify(d) === JSON.stringify(v))) {
        p.range(
          k,
          `${show(v)} is not supported by fledge's generate(); remove the key or set it to ${
            show(OFF_AT_DEFAULT[k][0])
          }`,
        );
      }
    } else {
      const near = closest(k, [...SUPPORTED, ...Object.keys(OFF_AT_DEFAULT)]);
      p.range(k, `unknown generation key${near ? ` (did you mean ${near}?)` : ""}; remove it`);
    }
  }
  checkValues(out, p, null);
  p.throwIfAny(what, file);
  return out as GenerationConfig;
}

/**
 * The options object of `generate()`, `beamSearch()` and `generateOnnx()` and the objects in it:
 * checked before anything reads them, so a wrong kind is one line naming the option, not a
 * `... is not a function` from deep inside decoding.
 * @throws {TypeError} naming the option and what it must be
 */
export function checkGenerateOptions(opts: unknown, fn: string): void {
  if (!isObject(opts)) {
    throw new TypeError(`${fn}: options must be an object (or left out), got ${show(opts)}`);
  }
  const bad = (k: string, what: string) => {
    throw new TypeError(`${fn}: ${k} must be ${what}, got ${show(opts[k])}`);
  };
  const has = (v: unknown, ...fns: string[]) => isObject(v) && fns.every((f) => typeof v[f] === "function");
  if (opts.tokenizer !== undefined && !has(opts.tokenizer, "decode")) { // decoding is all generate asks of it
    bad("tokenizer", "a Tokenizer (loadTokenizer(dir))");
  }
  if (opts.streamer !== undefined && !has(opts.streamer, "put", "end")) {
    bad("streamer", "an object with put() and end(), as HF's streamers (a function goes in onToken)");
  }
  if (opts.onToken !== undefined && typeof opts.onToken !== "function") bad("onToken", "a function");
}

/**
 * Merge options over the generation config over the model config over HF's defaults, and
 * validate the result for a batch whose longest prompt has `promptLen` tokens.
 * @throws {TypeError} / {@linkcode RangeError} listing every problem
 */
export function resolveGeneration(
  opts: GenerationConfig & { seed?: number; generation_config?: GenerationConfig },
  model: ModelConfig,
  ctx: { promptLen: number; hasTokenizer: boolean },
): ResolvedGeneration {
  // Every key is read or refused, as in a generation_config.json: a misspelt option (maxNewTokens) or
  // an HF feature fledge lacks (min_new_tokens: 5) would otherwise be dropped without a word.
  const rest = Object.fromEntries(Object.entries(opts).filter(([k]) => !GENERATE_ONLY.has(k)));
  checkGenerationConfig(rest, "generate() options", "Cannot generate");
  if (opts.generation_config !== undefined) {
    checkGenerationConfig(opts.generation_config, "the generation_config option", "Cannot generate");
  }
  // undefined, and null for a value (HF's None: the default; transformers 5 writes such nulls), are
  // unset; a null token id or stop_strings stays (none)
  const TOKEN_KEYS = ["eos_token_id", "pad_token_id", "bos_token_id", "stop_strings"];
  const defined = (o: object) =>
    Object.fromEntries(
      Object.entries(o).filter(([k, v]) => v !== undefined && (v !== null || TOKEN_KEYS.includes(k))),
    );
  const fromModel = {
    eos_token_id: model.eos_token_id,
    pad_token_id: model.pad_token_id,
    bos_token_id: model.bos_token_id,
  };
  const own: Record<string, unknown> = {};
  for (const k of SUPPORTED) own[k] = (opts as Record<string, unknown>)[k];
  const cfg: Record<string, unknown> = {
    ...HF_GENERATION_DEFAULTS,
    ...defined(fromModel),
    ...defined(opts.generation_config ?? {}),
    ...defined(own),
  };
  const p = new Problems();
  checkValues(cfg, p, model.vocab_size);
  // the sampler's generator takes 32 bits: seeds 2^32 apart would draw the same tokens
  if (
    opts.seed !== undefined && !(Number.isInteger(opts.seed) && opts.seed >= 0 && opts.seed <= 0xffffffff)
  ) {
    p.range("seed", `must be an integer in [0, 2^32 - 1], got ${show(opts.seed)}`);
  }
  if (cfg.do_sample === true && cfg.temperature === 0) {
    p.range(
      "temperature",
      "must be > 0 when do_sample is true; for greedy decoding set do_sample false (--greedy on the command line)",
    );
  }
  checkBeams(cfg, p);
  const stops = cfg.stop_strings === null || cfg.stop_strings === undefined
    ? []
    : typeof cfg.stop_strings === "string"
    ? [cfg.stop_strings]
    : cfg.stop_strings as string[];
  if (stops.length && !ctx.hasTokenizer) {
    p.type("stop_strings", "need a tokenizer to decode the continuation; pass the tokenizer option");
  }
  const limit = model.max_position_embeddings;
  // HF's default max_length (20, not asked for by the caller) means 20 new tokens, as many as the
  // model's positions allow (_prepare_generated_length); an asked-for max_length counts the prompt
  const askedLength = opts.max_length !== undefined && opts.max_length !== null;
  const defaultLength = !askedLength && cfg.max_length === HF_GENERATION_DEFAULTS.max_length;
  const max_new = (cfg.max_new_tokens as number | undefined) ??
    (defaultLength
      ? Math.min(HF_GENERATION_DEFAULTS.max_length, Math.max(1, limit - ctx.promptLen))
      : (cfg.max_length as number) - ctx.promptLen);
  if (cfg.max_new_tokens === undefined && Number.isInteger(max_new) && max_new < 1) {
    p.range(
      "max_new_tokens",
      `max_length ${cfg.max_length} leaves no room after the ${ctx.promptLen}-token prompt; set max_new_tokens`,
    );
  } else if (Number.isInteger(max_new) && max_new >= 1 && ctx.promptLen + max_new > limit) {
    p.range(
      "max_new_tokens",
      `prompt ${ctx.promptLen} + max_new_tokens ${max_new} exceeds the model's max_position_embeddings ${limit}; ` +
        (ctx.promptLen < limit
          ? `use at most ${limit - ctx.promptLen} new tokens or a shorter prompt`
          : `the prompt alone fills them: shorten it to under ${limit} tokens`),
    );
  }
  p.throwIfAny("Cannot generate", "generate() options");
  const ignored = ignoredFlags(cfg, own);
  if (ignored.length) warnOnce(`generate(): ${ignored.join("; ")}`);
  const eos = cfg.eos_token_id;
  const eosList = eos === null || eos === undefined
    ? []
    : Array.isArray(eos)
    ? eos as number[]
    : [eos as number];
  return {
    max_new_tokens: max_new,
    do_sample: cfg.do_sample as boolean,
    temperature: cfg.temperature as number,
    top_k: cfg.top_k as number,
    top_p: cfg.top_p as number,
    repetition_penalty: cfg.repetition_penalty as number,
    eos_token_id: eosList,
    pad_token_id: (cfg.pad_token_id as number | null | undefined) ?? eosList[0] ?? 0,
    stop_strings: stops,
    seed: opts.seed ?? Math.floor(Math.random() * 2 ** 32),
    num_beams: (cfg.num_beams as number | null) ?? 1,
    length_penalty: (cfg.length_penalty as number | null) ?? 1,
    early_stopping: (cfg.early_stopping as boolean | "never" | null) ?? false,
    no_repeat_ngram_size: (cfg.no_repeat_ngram_size as number | null) ?? 0,
    num_return_sequences: (cfg.num_return_sequences as number | null) ?? 1,
  };
}

/**
 * Settings the decoding mode leaves unused, as transformers' `GenerationConfig.validate` names them:
 * a sampling flag (temperature, top_k, top_p off their defaults) when `do_sample` is not true, a
 * beam flag (length_penalty, early_stopping) with one beam. As there, one inherited from a
 * generation config is not named when the caller chose the mode (`do_sample` / `num_beams` in
 * `own`) without setting the flag.
 */
export function ignoredFlags(cfg: Record<string, unknown>, own: Record<string, unknown>): string[] {
  const set = (k: string) => own[k] !== undefined && own[k] !== null;
  const named = (outer: string, flags: string[]) =>
    flags.filter((k) =>
      cfg[k] !== undefined && cfg[k] !== null &&
      cfg[k] !== HF_GENERATION_DEFAULTS[k as keyof typeof HF_GENERATION_DEFAULTS] &&
      (set(k) || !set(outer))
    );
  const out: string[] = [];
  if (cfg.do_sample !== true) {
    const f = named("do_sample", ["temperature", "top_k", "top_p"]);
    if (f.length) {
      out.push(
        `${f.map((k) => `${k} ${show(cfg[k])}`).join(", ")} ${
          f.length === 1 ? "applies" : "apply"
        } only when sampling, and do_sample is not true: ` +
          `set do_sample true or unset ${f.length === 1 ? "it" : "them"}`,
      );
    }
  }
  if ((cfg.num_beams ?? 1) === 1) {
    const f = named("num_beams", ["length_penalty", "early_stopping"]);
    if (f.length) {
      out.push(
        `${f.map((k) => `${k} ${show(cfg[k])}`).join(", ")} ${
          f.length === 1 ? "applies" : "apply"
        } only to beam search, and num_beams is 1: ` +
          `set num_beams > 1 or unset ${f.length === 1 ? "it" : "them"}`,
      );
    }
  }
  return out;
}

const warned = new Set<string>();
/** `console.warn` a message once per process (transformers' `warning_once`). */
function warnOnce(message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  console.warn(message);
}

/** The combinations of beam options that `generate()` cannot run (values already type-checked). */
function checkBeams(cfg: Record<string, unknown>, p: Problems): void {
  const K = cfg.num_beams, n = cfg.num_return_sequences;
  if (!Number.isInteger(K) || !Number.isInteger(n) || (K as number) < 1) return;
  if (K === 1 && (n as number) > 1) {
    p.range(
      "num_return_sequences",
      `${n} needs beam search: set num_beams >= ${n} (greedy and sampling return one sequence per prompt; ` +
        "repeat the prompt to sample several)",
    );
  } else if ((n as number) > (K as number)) {
    p.range("num_return_sequences", `${n} exceeds num_beams ${K}; use at most ${K} or more beams`);
  }
  if ((K as number) > 1 && cfg.do_sample === true) {
    p.range(
      "num_beams",
      `${K} with do_sample true (beam sampling) is not implemented; set do_sample false for beam search ` +
        "(--greedy on the command line, over a generation_config.json that samples) or num_beams 1 for sampling",
    );
  }
  const ss = cfg.stop_strings;
  if ((K as number) > 1 && (typeof ss === "string" || (Array.isArray(ss) && ss.length > 0))) {
    p.range("stop_strings", `are not supported with num_beams ${K}; use eos_token_id or num_beams 1`);
  }
}
