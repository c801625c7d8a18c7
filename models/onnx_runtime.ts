/**
 * Run an exported decoder (`models/formats/onnx.ts`, or any decoder in Optimum's with-past layout)
 * with onnxruntime (`npm:onnxruntime-node`, CPU execution provider): {@linkcode OnnxDecoder} runs
 * one step (prefill or decode) with the past key/values, and {@linkcode generateOnnx} decodes
 * as {@linkcode generate} does: HF's left padding (pads masked, `position_ids = cumsum(mask) - 1`,
 * pads at 1), the prompt prefilled once, then one token per row per step fed with the `present`
 * key/values of the step before; the same logits processing, stop rules and streaming callbacks.
 * Beam search stays on the {@linkcode Transformer}.
 *
 * @module
 */
import type * as Ort from "npm:onnxruntime-node@^1.30.0";

let ortModule: typeof Ort | null = null;

/**
 * onnxruntime-node, loaded on first use: importing fledge never loads its native library; only
 * running an ONNX model does.
 */
async function loadOrt(): Promise<typeof Ort> {
  return ortModule ??= await import("npm:onnxruntime-node@^1.30.0");
}
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { readJsonFile } from "../util/json.ts";
import { fromHfConfig, type ModelConfig } from "./config.ts";
import { checkPrompts, leftPad, RowDecoder } from "./_decode.ts";
import type { GenerateOptions, GenerateResult } from "./generate.ts";
import { checkGenerateOptions, resolveGeneration } from "./generation_config.ts";

/** One f32 tensor of an {@linkcode OnnxPast}: row-major data and its dims. */
export interface OnnxCacheTensor {
  /** `[B, Hkv, length, D]`. */
  dims: readonly number[];
  /** The values, row-major. */
  data: Float32Array;
}

/** The key/value cache of an {@linkcode OnnxDecoder}: the `present` outputs of the last step. */
export interface OnnxPast {
  /** `past_key_values.{i}.key|value` -> `[B, Hkv, length, D]`. */
  tensors: Record<string, OnnxCacheTensor>;
  /** Positions held. */
  length: number;
}

/** One step's inputs: row-major `[B, S]` ids and positions, `[B, past + S]` mask. */
export interface OnnxStepInput {
  /** New token ids, one row per sequence (all rows the same length). */
  input_ids: number[][];
  /** 1 = attend, 0 = padding, over the past and the new tokens: `[B, past + S]`. */
  attention_mask: number[][];
  /** Position of each new token; default `past + t`. */
  position_ids?: number[][];
  /** The cache from the step before; null or absent for the prefill. */
  past?: OnnxPast | null;
}

/** One step's outputs. */
export interface OnnxStepOutput {
  /** `[B, S, V]` row-major. */
  logits: Float32Array;
  /** The cache to feed to the next step. */
  past: OnnxPast;
}

/** Options of {@linkcode OnnxDecoder.load}. */
export interface OnnxDecoderOptions {
  /**
   * The model's config, needed by {@linkcode generateOnnx}. Default: the `config.json` beside the
   * `.onnx` file (as `exportOnnx` and Optimum write it), when there is one; `null`: none.
   */
  config?: ModelConfig | null;
  /** onnxruntime intra-op threads; default onnxruntime's (the cores). */
  threads?: number;
}

const REQUIRED = ["input_ids", "attention_mask"];

/**
 * A decoder-with-past ONNX model loaded in onnxruntime. Owns the native session: call
 * {@linkcode OnnxDecoder.release} when done.
 *
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { presetConfig } from "./config.ts";
 * import { exportOnnx } from "./formats/onnx.ts";
 * import { OnnxDecoder } from "./onnx_runtime.ts";
 * import { Transformer } from "./transformer.ts";
 * const be = await createBackend("cpu");
 * const model = Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 32 }), be);
 * const dir = await Deno.makeTempDir();
 * await exportOnnx(model, `${dir}/model.onnx`);
 * const dec = await OnnxDecoder.load(`${dir}/model.onnx`);
 * const first = await dec.step({ input_ids: [[1, 2, 3]], attention_mask: [[1, 1, 1]] });
 * const next = await dec.step({ input_ids: [[4]], attention_mask: [[1, 1, 1, 1]], past: first.past });
 * if (first.logits.length !== 3 * 32 || next.past.length !== 4) throw new Error("steps");
 * await dec.release();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class OnnxDecoder {
  readonly #session: Ort.InferenceSession;
  #released = false;
  #configProblem: string | null = null; // why the config.json beside the file was not read
  readonly #ort: typeof Ort;

  private constructor(
    session: Ort.InferenceSession,
    ort: typeof Ort,
    /** The file the session was loaded from. */
    readonly path: string,
    /** The model's config: given to {@linkcode OnnxDecoder.load}, or the `config.json` beside the file. */
    readonly config: ModelConfig | null,
    /** Layers (pairs of past key/value inputs). */
    readonly num_hidden_layers: number,
    /** Key/value heads of the past inputs. */
    readonly num_key_value_heads: number,
    /** Per-head width of the past inputs. */
    readonly head_dim: number,
    /** Width of the logits. */
    readonly vocab_size: number,
  ) {
    this.#session = session;
    this.#ort = ort;
  }

  /**
   * Load an ONNX decoder and read its layout from the graph's inputs and outputs.
   * @param path the `.onnx` file (its external data file beside it)
   * @param opts {@linkcode OnnxDecoderOptions}
   * @throws {Deno.errors.NotFound} when the file is missing
   * @throws {SyntaxError} when onnxruntime cannot load the file, or it is not a decoder with past
   *   key/values in Optimum's layout
   * @throws {RangeError} when `config` disagrees with the graph
   */
  static async load(path: string, opts: OnnxDecoderOptions = {}): Promise<OnnxDecoder> {
    await Deno.stat(path).catch((e) => {
      if (e instanceof Deno.errors.NotFound) {
        throw new Deno.errors.NotFound(`Cannot load the ONNX model ${path}: no such file`);
      }
      throw e;
    });
    const ort = await loadOrt();
    let session: Ort.InferenceSession;
    try {
      const so: Ort.InferenceSession.SessionOptions = {};
      if (opts.threads) so.intraOpNumThreads = opts.threads;
      session = await ort.InferenceSession.create(path, so);
    } catch (e) {
      const msg = (e instanceof Error ? e.message : String(e)).split("\n")[0];
      throw new SyntaxError(`Cannot load the ONNX model ${path}: onnxruntime says: ${msg}`);
    }
    const bad = (why: string) =>
      new SyntaxError(
        `Cannot load the ONNX model ${path}: ${why}; export a decoder with past key/values (exportOnnx, or Optimum's "text-generation-with-past")`,
      );
    const missing = REQUIRED.filter((n) => !session.inputNames.includes(n));
    if (missing.length || !session.outputNames.includes("logits")) {
      throw bad(
        `inputs ${missing.join(", ") || "ok"}, output logits ${session.outputNames.includes("logits")}`,
      );
    }
    const pastKeys = session.inputNames.filter((n) => /^past_key_values\.\d+\.key$/.test(n));
    const pk = session.inputMetadata.find((m) => m.name === "past_key_values.0.key");
    const lg = session.outputMetadata.find((m) => m.name === "logits");
    const dims = (m: typeof pk) => (m && m.isTensor ? m.shape : []) as (number | string)[];
    const [, hkv, , d] = dims(pk), v = dims(lg)[2];
    if (!pastKeys.length || typeof hkv !== "number" || typeof d !== "number" || typeof v !== "number") {
      throw bad(
        "no past_key_values.0.key [batch, heads, past, head_dim] input with fixed heads and head_dim",
      );
    }
    // the config.json beside it, unless given: one that cannot be read only matters to generateOnnx
    // (step() needs none), which then names the problem
    const beside = join(dirname(path), "config.json");
    const own = opts.config === undefined && existsSync(beside);
    let c = opts.config, problem: string | null = null;
    if (own) {
      try {
        c = fromHfConfig(await readJsonFile(beside), { file: beside });
      } catch (e) {
        problem = e instanceof Error ? e.message : String(e);
      }
    }
    if (c) {
      const got = {
        num_hidden_layers: pastKeys.length,
        num_key_value_heads: hkv,
        head_dim: d,
        vocab_size: v,
      };
      for (const [k, x] of Object.entries(got)) {
        if (c[k as keyof typeof got] !== x) {
          throw new RangeError(
            `Cannot load the ONNX model ${path}: config ${k} is ${
              c[k as keyof typeof got]
            } but the graph has ${x}; ` +
              (own
                ? `${beside} is another model's: put the exported model's config.json there, or pass { config }`
                : `give the config of the model that was exported`),
          );
        }
      }
    }
    const dec = new OnnxDecoder(session, ort, path, c ?? null, pastKeys.length, hkv, d, v);
    dec.#configProblem = problem;
    return dec;
  }

  /** Why the `config.json` beside the file could not be read, when it could not (else null). */
  get configProblem(): string | null {
    return this.#configProblem;
  }

  /**
   * One forward step: prefill (no past) or decode (with the past of the step before).
   * @param input {@linkcode OnnxStepInput}
   * @returns logits `[B, S, V]` and the cache for the next step
   * @throws {RangeError} when the rows or the mask have the wrong lengths
   */
  async step(input: OnnxStepInput): Promise<OnnxStepOutput> {
    if (this.#released) {
      throw new TypeError(
        `Cannot run the ONNX decoder ${this.path}: it was released; load it again (OnnxDecoder.load)`,
      );
    }
    const B = input.input_ids.length, S = input.input_ids[0]?.length ?? 0;
    const P = input.past?.length ?? 0;
    const rect = (rows: number[][], n: number) => rows.length === B && rows.every((r) => r.length === n);
    if (!B || !S || !rect(input.input_ids, S) || !rect(input.attention_mask, P + S)) {
      throw new RangeError(
        `Cannot run the ONNX decoder: input_ids must be [B, S] with S >= 1 and attention_mask [B, past + S] = [${B}, ${
          P + S
        }]`,
      );
    }
    if (input.position_ids && !rect(input.position_ids, S)) {
      throw new RangeError(`Cannot run the ONNX decoder: position_ids must be [${B}, ${S}] like input_ids`);
    }
    const i64 = (rows: number[][]) =>
      new this.#ort.Tensor("int64", BigInt64Array.from(rows.flat(), (x) => BigInt(x)), [
        rows.length,
        rows[0].length,
      ]);
    const pos = input.position_ids ?? input.input_ids.map((r) => r.map((_, t) => P + t));
    const feeds: Record<string, Ort.Tensor> = {
      input_ids: i64(input.input_ids),
      attention_mask: i64(input.attention_mask),
    };
    if (this.#session.inputNames.includes("position_ids")) feeds.position_ids = i64(pos);
    const Hkv = this.num_key_value_heads, D = this.head_dim;
    for (let i = 0; i < this.num_hidden_layers; i++) {
      for (const kv of ["key", "value"]) {
        const name = `past_key_values.${i}.${kv}`;
        const t = input.past?.tensors[name] ?? { data: new Float32Array(0), dims: [B, Hkv, 0, D] };
        feeds[name] = new this.#ort.Tensor("float32", t.data, t.dims);
      }
    }
    const out = await this.#session.run(feeds);
    const tensors: Record<string, OnnxCacheTensor> = {};
    for (let i = 0; i < this.num_hidden_layers; i++) {
      for (const kv of ["key", "value"]) {
        const t = out[`present.${i}.${kv}`];
        tensors[`past_key_values.${i}.${kv}`] = { dims: t.dims, data: t.data as Float32Array };
      }
    }
    return { logits: out.logits.data as Float32Array, past: { tensors, length: P + S } };
  }

  /** Release the native session. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.#session.release();
  }
}

/**
 * Generate with an {@linkcode OnnxDecoder}: the greedy and sampling paths of {@linkcode generate}
 * (same options, processors, seeded sampler, stop rules, callbacks, result), run by onnxruntime.
 *
 * @param decoder loaded with its `config`
 * @param input one prompt of token ids per row (lengths may differ)
 * @param opts {@linkcode GenerateOptions} (`num_beams` must be 1)
 * @throws {TypeError} when the decoder was loaded without a config, or for malformed prompts
 * @throws {RangeError} for `num_beams > 1` or values out of range (as {@linkcode generate})
 *
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { presetConfig } from "./config.ts";
 * import { exportOnnx } from "./formats/onnx.ts";
 * import { generate } from "./generate.ts";
 * import { generateOnnx, OnnxDecoder } from "./onnx_runtime.ts";
 * import { Transformer } from "./transformer.ts";
 * const be = await createBackend("cpu");
 * const model = Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 32 }), be, { seed: 3 });
 * const dir = await Deno.makeTempDir();
 * await exportOnnx(model, `${dir}/model.onnx`);
 * const dec = await OnnxDecoder.load(`${dir}/model.onnx`, { config: model.config });
 * const opts = { max_new_tokens: 5, eos_token_id: null };
 * const a = await generateOnnx(dec, [[1, 2, 3], [4]], opts), b = await generate(model, [[1, 2, 3], [4]], opts);
 * if (a.tokens.join("|") !== b.tokens.join("|")) throw new Error(`${a.tokens} vs ${b.tokens}`);
 * await dec.release();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function generateOnnx(
  decoder: OnnxDecoder,
  input: number[][],
  opts: GenerateOptions = {},
): Promise<GenerateResult> {
  checkGenerateOptions(opts, "generateOnnx");
  const config = decoder.config;
  if (!config) {
    throw new TypeError(
      `Cannot generate with ${decoder.path}: the decoder was loaded without its config (${
        decoder.configProblem ?? "no config.json beside it"
      }); put the model's config.json there, or pass { config } (fromHfConfig of it) to OnnxDecoder.load`,
    );
  }
  checkPrompts(input, config.vocab_size);
  const P = Math.max(...input.map((r) => r.length));
  const s = resolveGeneration(opts, config, { promptLen: P, hasTokenizer: !!opts.tokenizer });
  if (s.num_beams > 1) {
    throw new RangeError(
      `Cannot generate with the ONNX decoder: num_beams ${s.num_beams}; beam search runs on the Transformer (backend cpu or webgpu)`,
    );
  }
  const V = config.vocab_size, B = input.length, L = P + s.max_new_tokens, pad = s.pad_token_id;
  const { ids, pos, mask } = leftPad(input, P, L, pad);
  const rows = (a: Int32Array, w: number, n: number) =>
    Array.from({ length: B }, (_, b) => Array.from(a.subarray(b * w, b * w + n)));
  const nextPos = input.map((r) => r.length);
  const picker = new RowDecoder(input, s, opts.tokenizer);

  let feed: OnnxStepInput = {
    input_ids: rows(ids, P, P),
    attention_mask: rows(mask, L, P),
    position_ids: rows(pos, P, P),
  };
  for (let step = 0; step < s.max_new_tokens; step++) {
    const r = await decoder.step(feed);
    const T = feed.input_ids[0].length;
    const emitted = picker.pick((b) => r.logits.subarray((b * T + T - 1) * V, (b * T + T) * V));
    await opts.onToken?.(emitted, step);
    opts.streamer?.put(emitted);
    if (picker.done) break;
    feed = {
      input_ids: emitted.map((t) => [t ?? pad]),
      attention_mask: rows(mask, L, r.past.length + 1),
      position_ids: nextPos.map((p) => [p]),
      past: r.past,
    };
    for (let b = 0; b < B; b++) nextPos[b]++;
  }
  opts.streamer?.end();
  return picker.result();
}
