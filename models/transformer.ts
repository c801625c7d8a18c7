/**
 * The one decoder-only transformer, driven by {@linkcode ModelConfig}: GPT-2 style (LayerNorm,
 * learned positions, GELU MLP, tied embeddings, biases), Llama style (RMSNorm, RoPE, SwiGLU, GQA,
 * no biases) and every mix in between. No per-family copies: a family differs only in its config
 * and its checkpoint key map (`config.ts`).
 *
 * Layout: activations are rows `[B*T, C]`; q is `[B, T, H, D]`, k and v `[B, T, Hkv, D]`, so the
 * projections need no transposes. Parameters use canonical names (`layers.{i}.attn.q.weight`, ...)
 * with matrices in the `nn.Linear` layout `[out, in]`.
 *
 * Training mode (`ForwardOptions.dropout`) applies the config's dropouts where Hugging Face's
 * GPT-2 and Llama do (`modeling_gpt2.py`, `modeling_llama.py`): `embd_pdrop` on the embedding sum,
 * `attention_dropout` on the attention probabilities (inside the attention kernels), `resid_pdrop`
 * on the attention output projection and on the MLP output before each residual add.
 * `ForwardOptions.gradient_checkpointing` recomputes each decoder block in the backward.
 *
 * Packed rows (several examples in one row, `data/packing.ts`): `ForwardOptions.segment_ids` keeps
 * attention within each example and `position_ids` restart at 0 for each, so every example gets
 * the logits and gradients it would get alone in a padded row (TRL / HF padding-free packing,
 * flash-attn varlen). Masks, positions and segments given as options may be disposed by the caller
 * once the forward has returned: what a backward or a checkpointed recompute reads is held as
 * views by the graph.
 *
 * @module
 */
import { attention, type AttentionDropout } from "../kernels/attention.ts";
import { checkpoint, isGradEnabled, needsGrad, release } from "../kernels/autograd.ts";
import { Backend } from "../kernels/backend.ts";
import { isObject, show } from "../util/problems.ts";
import { add, dropout, dropoutSeed, uniformNoise } from "../kernels/elementwise.ts";
import { embedding } from "../kernels/embedding.ts";
import { crossEntropy, type CrossEntropyOptions, shiftLabels } from "../kernels/loss.ts";
import { matmul } from "../kernels/matmul.ts";
import { linearQ4, type QuantizedTensor } from "../kernels/quant.ts";
import { layerNorm, rmsNorm } from "../kernels/norm.ts";
import { rope } from "../kernels/rope.ts";
import { gelu, swiglu } from "../kernels/activation.ts";
import type { Tensor } from "../kernels/tensor.ts";
import { type ModelConfig, modelRopeInvFreq } from "./config.ts";
import type { GenerationConfig } from "./generation_config.ts";
import { checkSeed, mulberry32 } from "../util/random.ts";

/** Canonical parameter name -> tensor. */
export type ParamMap = Map<string, Tensor>;

/** Per-layer key/value cache for decoding: `[B, max_len, Hkv, D]` per layer, `length` valid rows. */
export interface KVCache {
  /** Cached keys, one `[batch, max_len, Hkv, D]` f32 tensor per layer, post-rope. */
  k: Tensor[];
  /** Cached values, one `[batch, max_len, Hkv, D]` f32 tensor per layer. */
  v: Tensor[];
  /** Rows filled so far (the position of the next token). */
  length: number;
  /** Capacity in positions. */
  max_len: number;
  /** Sequences decoded together: the leading dim of every k and v tensor. */
  batch: number;
}

/** Options of {@linkcode Transformer.forward}. */
export interface ForwardOptions {
  /** `[B, T]` 1 = real token, 0 = pad (i32/f32); with a cache: `[B, cache.max_len]`. */
  attention_mask?: Tensor | null;
  /** `[B, T]` i32 explicit positions (left padding, packed rows); default `offset + t`. */
  position_ids?: Tensor | null;
  /**
   * `[B, T]` i32 segment ids of packed rows (with a cache: `[B, cache.max_len]`, by position):
   * 0 = padding, k >= 1 = the k-th example of the row. A token attends only to earlier tokens of
   * its own segment; padding tokens attend to nothing. Give `position_ids` restarting at 0 for each
   * segment with them (as `packExamples` writes them).
   */
  segment_ids?: Tensor | null;
  /**
   * When given, filled with HF's `output_hidden_states` (`modeling_llama.py`, `modeling_gpt2.py`):
   * L + 1 tensors `[B, T, C]`, entry 0 the embedding output (after the position embedding and the
   * embedding dropout), entry i the output of block i - 1, and entry L the output of the last block
   * after the final norm. Views the caller owns (dispose them); under autograd they stay on the graph.
   */
  output_hidden_states?: Tensor[];
  /** Decode with (and append to) this cache. */
  cache?: KVCache | null;
  /**
   * Training mode, dropout on (HF `model.train()`): the config's `embd_pdrop`, `attention_dropout`
   * and `resid_pdrop` apply at their sites (see the module doc). Absent or null: no dropout at all
   * (evaluation, generation), the same result bit for bit as before dropout existed.
   *
   * Contract: every mask is a pure function of (`seed`, site, layer, element index) — site seeds
   * as {@linkcode DROPOUT_SITES} says, elements hashed by `dropoutHash` (kernels/elementwise.ts) —
   * so the same seed gives the same masks on every call and the backward and a checkpointed
   * recompute regenerate them. Give each micro-batch of each optimizer step its own seed, derived
   * from (run seed, global step, micro-batch), and a resumed run draws the same masks.
   */
  dropout?: { seed: number } | null;
  /**
   * NEFTune (HF `neftune_noise_alpha`, Jain et al. 2023), for training only: uniform noise on
   * `[-m, m)`, `m = alpha / sqrt(T · C)`, added to the token embeddings before the position
   * embeddings, as HF's `neftune_post_forward_hook` on the input embeddings (T the row length,
   * padding included). The noise is a pure function of (`seed`, element) through
   * {@linkcode DROPOUT_SITES}`.neftune`, like the dropout masks; give it the micro-batch's seed.
   * Absent, null or alpha 0: no noise.
   */
  neftune?: { alpha: number; seed: number } | null;
  /**
   * Gradient checkpointing (HF `gradient_checkpointing_enable()`): keep only each decoder block's
   * input while recording and recompute the block's activations in the backward, trading a second
   * forward per block for activation memory. Gradients are the same (the recompute runs the same
   * kernels on the same inputs with the same dropout masks). Only while recording for autograd and
   * without a KV cache; otherwise ignored. Default false.
   */
  gradient_checkpointing?: boolean;
}

/**
 * Dropout sites of the decoder. The mask seed of a site in layer i (layer 0 for the embeddings) is
 * `dropoutSeed(seed, [site, i])` (kernels/elementwise.ts), so sites and layers draw unrelated masks.
 *
 * @example
 * ```ts
 * import { dropoutSeed } from "../kernels/elementwise.ts";
 * import { DROPOUT_SITES } from "./transformer.ts";
 * const l0 = dropoutSeed(7, [DROPOUT_SITES.mlp_resid, 0]), l1 = dropoutSeed(7, [DROPOUT_SITES.mlp_resid, 1]);
 * if (l0 === l1) throw new Error("one mask stream per layer");
 * ```
 */
export const DROPOUT_SITES = {
  /** after the token (+ position) embedding sum, `embd_pdrop` */
  embed: 0,
  /** attention probabilities, `attention_dropout` */
  attn_probs: 1,
  /** attention output projection before the residual add, `resid_pdrop` */
  attn_resid: 2,
  /** MLP output before the residual add, `resid_pdrop` */
  mlp_resid: 3,
  /** a {@linkcode LinearAdapter}'s own dropout (LoRA `lora_dropout`), see {@linkcode LinearAdapterContext} */
  adapter: 4,
  /** NEFTune's noise on the token embeddings (`ForwardOptions.neftune`; a noise, not a mask) */
  neftune: 5,
} as const;

/** The mask seed of one dropout site of one layer (see {@linkcode DROPOUT_SITES}). */
function siteSeed(seed: number, site: number, layer: number): number {
  return dropoutSeed(seed, [site, layer]);
}

/**
 * A hook on one linear layer (LoRA, DoRA; see `training/peft.ts`): given the layer's input
 * `x [M, in]` and its base output `base = x·Wᵀ + bias [M, out]`, return the adapted output. Declared
 * here so that models/ does not import training/.
 */
export interface LinearAdapter {
  /**
   * The adapted output for input `x` given the base output `base`, e.g. `base + s·(x Aᵀ) Bᵀ` for
   * LoRA; called when {@linkcode linear} is absent or returns null.
   *
   * @param x the layer's input `[M, in]`
   * @param base the base output `x·Wᵀ + bias`, `[M, out]`
   * @param weight the base weight `[out, in]`, f32 or 4-bit (QLoRA)
   * @param bias the base bias `[out]`, if the layer has one
   * @param ctx the forward's mode: the dropout seed of this linear (training) or null
   */
  apply(
    x: Tensor,
    base: Tensor,
    weight: Tensor | QuantizedTensor,
    bias: Tensor | undefined,
    ctx?: LinearAdapterContext,
  ): Tensor;
  /**
   * The whole adapted linear, base product included, when the adapter can compute it in fewer
   * ops than `base` + {@linkcode apply} (LoRA: one fused op); null to take the `apply` path.
   */
  linear?(
    x: Tensor,
    weight: Tensor | QuantizedTensor,
    bias: Tensor | undefined,
    ctx?: LinearAdapterContext,
  ): Tensor | null;
  /** Release the adapter's tensors (called by `Transformer.dispose`; must be idempotent). */
  dispose?(): void;
}

/**
 * What a {@linkcode LinearAdapter} learns of the forward it runs in. `dropout_seed` is this linear's
 * mask seed when the forward is in training mode (`ForwardOptions.dropout`), else null (no adapter
 * dropout): `dropoutSeed(seed, [DROPOUT_SITES.adapter, fnv1a(name)])` with the canonical linear
 * name (`layers.0.attn.q`), a pure function of the forward's seed, so a checkpointed recompute and a
 * resumed run draw the same adapter masks.
 */
export interface LinearAdapterContext {
  /** This linear's u32 adapter-dropout mask seed in training mode; null in eval (no dropout). */
  dropout_seed: number | null;
}

/** 32-bit FNV-1a of a string's UTF-16 code units (the adapter dropout part of a linear's name). */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** The shape of every canonical parameter of a config (tied LM head omitted). */
export function parameterShapes(c: ModelConfig): Map<string, number[]> {
  const C = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const q = c.num_attention_heads * D, kv = c.num_key_value_heads * D;
  const s = new Map<string, number[]>();
  s.set("embed.weight", [c.vocab_size, C]);
  if (c.position === "learned") s.set("pos_embed.weight", [c.max_position_embeddings, C]);
  const norm = (n: string) => {
    s.set(`${n}.weight`, [C]);
    if (c.norm === "layernorm") s.set(`${n}.bias`, [C]);
  };
  const lin = (n: string, out: number, inp: number, bias: boolean) => {
    s.set(`${n}.weight`, [out, inp]);
    if (bias) s.set(`${n}.bias`, [out]);
  };
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const l = `layers.${i}`;
    norm(`${l}.attn_norm`);
    lin(`${l}.attn.q`, q, C, c.qkv_bias);
    lin(`${l}.attn.k`, kv, C, c.qkv_bias);
    lin(`${l}.attn.v`, kv, C, c.qkv_bias);
    lin(`${l}.attn.o`, C, q, c.o_bias);
    norm(`${l}.mlp_norm`);
    if (c.mlp === "swiglu") lin(`${l}.mlp.gate`, I, C, c.mlp_bias);
    lin(`${l}.mlp.up`, I, C, c.mlp_bias);
    lin(`${l}.mlp.down`, C, I, c.mlp_bias);
  }
  norm("final_norm");
  if (!c.tie_word_embeddings) s.set("lm_head.weight", [c.vocab_size, C]);
  if (c.lm_head_bias) s.set("lm_head.bias", [c.vocab_size]);
  return s;
}

/** A seeded standard normal generator (mulberry32 + Box-Muller). */
export function normalRng(seed: number): () => number {
  const uniform = mulberry32(seed);
  // + 2^-33 keeps u in (0, 1) so log(0) never happens (exact: mulberry32 yields k / 2^32)
  const u = () => uniform() + 2 ** -33;
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/**
 * GPT-2 initialisation: weights N(0, initializer_range), residual output projections
 * (`attn.o`, `mlp.down`) scaled by 1/sqrt(2 * layers), biases 0, norm weights 1 (nanoGPT).
 */
export function initParameters(c: ModelConfig, backend: Backend, opts: { seed?: number } = {}): ParamMap {
  checkSeed(opts.seed ?? 1337, "Cannot initialise the model");
  const rnd = normalRng(opts.seed ?? 1337);
  const params: ParamMap = new Map();
  const std = c.initializer_range;
  const resid = std / Math.sqrt(2 * c.num_hidden_layers);
  for (const [name, shape] of parameterShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const host = new Float32Array(n);
    if (name.endsWith(".bias")) host.fill(0);
    else if (/norm\.weight$/.test(name)) host.fill(1);
    else {
      const sd = /(attn\.o|mlp\.down)\.weight$/.test(name) ? resid : std;
      for (let i = 0; i < n; i++) host[i] = rnd() * sd;
    }
    const t = backend.fromArray(host, shape);
    t.name = name;
    params.set(name, t);
  }
  return params;
}

/**
 * The decoder. Owns its parameters (GPU resources), so it is a class.
 *
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { presetConfig } from "./config.ts";
 * import { Transformer } from "./transformer.ts";
 * const be = await createBackend("cpu");
 * const model = Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 32 }), be);
 * const logits = model.forward(be.fromArray([1, 2, 3], [1, 3], "i32"));
 * if (logits.shape.join() !== "1,3,32") throw new Error("shape");
 * ```
 */
export class Transformer {
  /** Rotary inverse frequencies `[rotary_dim / 2]` from {@linkcode modelRopeInvFreq}; null without rope. */
  readonly invFreq: Float32Array | null;
  /** Adapters by canonical linear name (`layers.0.attn.q`), applied in every forward. */
  readonly adapters: Map<string, LinearAdapter> = new Map();
  /**
   * 4-bit base weights by canonical linear name (QLoRA); such a linear's f32 `.weight` is no
   * longer in `params`.
   */
  readonly quantized: Map<string, QuantizedTensor> = new Map();
  /**
   * The defaults `generate()` and `beamSearch()` decode with under their options (HF's
   * `model.generation_config`): the `generation_config.json` of the folder `loadModel` read is put
   * here at the first generation; null on a model built in code leaves HF's defaults and the
   * config's token ids.
   */
  generation_config: GenerationConfig | null = null;

  /**
   * Wraps existing parameters (use {@linkcode Transformer.init} for fresh ones).
   *
   * @param config the architecture the parameters follow
   * @param params canonical parameters (see {@linkcode parameterShapes})
   * @param backend where the parameters live and the forward runs
   * @throws {TypeError} when a parameter is missing or has the wrong shape
   */
  constructor(readonly config: ModelConfig, readonly params: ParamMap, readonly backend: Backend) {
    for (const [name, shape] of parameterShapes(config)) {
      const t = params.get(name);
      if (!t) throw new TypeError(`Cannot build the model: parameter ${name} is missing`);
      if (t.shape.join() !== shape.join()) {
        throw new TypeError(
          `Cannot build the model: parameter ${name} has shape [${t.shape}], expected [${shape}]`,
        );
      }
    }
    this.invFreq = config.position === "rope" ? modelRopeInvFreq(config) : null;
  }

  /** A freshly initialised model (GPT-2 init). */
  static init(config: ModelConfig, backend: Backend, opts: { seed?: number } = {}): Transformer {
    if (!isObject(config) || typeof config.hidden_size !== "number") {
      throw new TypeError(
        `Transformer.init: config must be a ModelConfig (presetConfig("tiny"), fromHfConfig(json)), got ${
          show(config)
        }`,
      );
    }
    if (!(backend instanceof Backend)) {
      throw new TypeError(
        `Transformer.init: backend must be a Backend from createBackend(), got ${show(backend)}`,
      );
    }
    return new Transformer(config, initParameters(config, backend, opts), backend);
  }

  /**
   * The parameters in a stable order (canonical names), for optimizers. Frozen f16 weights
   * (`loadModel` dtype `"f16"`) are left out, as 4-bit ones are: matmul has no f16 gradient.
   */
  parameters(): Tensor[] {
    return [...parameterShapes(this.config).keys()].filter((n) => this.params.has(n)).map((n) =>
      this.params.get(n)!
    ).filter((t) => t.dtype !== "f16");
  }

  /** Mark every parameter as trainable (or frozen). */
  setTrainable(on: boolean): void {
    for (const p of this.parameters()) p.requiresGrad = on;
  }

  /** An empty KV cache for `batch` sequences of up to `max_len` positions. */
  createCache(batch: number, max_len: number): KVCache {
    const c = this.config;
    if (max_len > c.max_position_embeddings && c.position === "learned") {
      throw new RangeError(
        `Cannot create a KV cache of ${max_len} positions: over max_position_embeddings ${c.max_position_embeddings}`,
      );
    }
    const shape = [batch, max_len, c.num_key_value_heads, c.head_dim];
    const k: Tensor[] = [], v: Tensor[] = [];
    for (let i = 0; i < c.num_hidden_layers; i++) {
      k.push(this.backend.zeros(shape));
      v.push(this.backend.zeros(shape));
    }
    return { k, v, length: 0, max_len, batch };
  }

  /**
   * Logits `[B, T, vocab]` for token ids `[B, T]` (i32). With a cache, the new keys and values are
   * appended at `cache.length` and attention covers the cached prefix. The caller owns the logits
   * (and its `ids`): `dispose()` them when done, and run inference under `noGrad(() => ...)`, or
   * the graph recorded for a backward keeps every activation on the device.
   * @throws {RangeError} when the sequence is longer than the model's positions or the cache
   *
   * @example Hidden states (HF `output_hidden_states`): the embeddings, then each block's output,
   * the last one after the final norm
   * ```ts
   * import { createBackend } from "../kernels/backend.ts";
   * import type { Tensor } from "../kernels/tensor.ts";
   * import { presetConfig } from "./config.ts";
   * import { Transformer } from "./transformer.ts";
   * const be = await createBackend("cpu");
   * const model = Transformer.init(presetConfig("tiny", { num_hidden_layers: 2, vocab_size: 32 }), be);
   * const states: Tensor[] = [];
   * model.forward(be.fromArray([1, 2, 3], [1, 3], "i32"), { output_hidden_states: states });
   * if (states.length !== 3 || states[2].shape.join() !== "1,3,128") throw new Error("hidden states");
   * ```
   */
  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    const [B, T] = ids.shape;
    return view(this.head(this.hidden(ids, opts)), [B, T, this.config.vocab_size]);
  }

  /** The LM head: logits `[N, vocab]` for hidden rows `[N, C]` (takes over `h`). */
  head(h: Tensor): Tensor {
    const c = this.config;
    const w = c.tie_word_embeddings ? this.p("embed.weight") : this.p("lm_head.weight");
    const logits = matmul(h, w, { transB: true, bias: c.lm_head_bias ? this.p("lm_head.bias") : undefined });
    release(h);
    return logits;
  }

  /**
   * Mean causal-LM cross-entropy (Hugging Face convention: logits at t predict labels at t + 1;
   * label -100 is ignored), as a `[1]` tensor on the device. `ce`: `label_smoothing` (torch's).
   */
  loss(ids: Tensor, labels: Tensor, opts: ForwardOptions = {}, ce: CrossEntropyOptions = {}): Tensor {
    const logits = this.forward(ids, opts);
    const [B, T] = ids.shape;
    const flat = view(logits, [B * T, this.config.vocab_size]);
    const shifted = shiftLabels(labels);
    const flatLabels = shifted.reshape([B * T]);
    shifted.dispose();
    const loss = crossEntropy(flat, flatLabels, ce);
    flatLabels.dispose();
    release(flat);
    return loss;
  }

  /**
   * The loss of {@linkcode Transformer.loss} computed only where a label counts: `rows` (i32 `[M]`)
   * are the flat positions `b * T + t` whose shifted label `labels[b, t + 1]` is not -100, and
   * `targets` (i32 `[M]`) those labels. Those hidden rows are gathered on the device before the LM
   * head, so the head and the cross-entropy see `[M, V]` logits, not `[B*T, V]`: the same mean, with
   * less work and memory when most positions are prompt (SFT with the loss on the answer only).
   */
  lossAt(
    ids: Tensor,
    rows: Tensor,
    targets: Tensor,
    opts: ForwardOptions = {},
    ce: CrossEntropyOptions = {},
  ): Tensor {
    const logits = this.logitsAt(ids, rows, opts);
    const loss = crossEntropy(logits, targets, ce);
    release(logits);
    return loss;
  }

  /**
   * Logits `[M, V]` at the flat positions `rows` (i32 `[M]`, `b * T + t`) of `ids [B, T]`: those
   * hidden rows are gathered on the device before the LM head, which never sees `[B*T, V]`
   * (differentiable: the gather's backward scatters into the hidden states' gradient).
   */
  logitsAt(ids: Tensor, rows: Tensor, opts: ForwardOptions = {}): Tensor {
    const h = this.hidden(ids, opts); // [B*T, C]
    const picked = embedding(rows, h); // [M, C]
    release(h);
    return this.head(picked);
  }

  /** Final hidden states `[B*T, C]` (after the final norm). */
  hidden(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    const c = this.config;
    if (ids.rank !== 2 || ids.dtype !== "i32") {
      throw new TypeError(`Cannot run the model: ids must be i32 [B, T], got ${ids.dtype} [${ids.shape}]`);
    }
    const [B, T] = ids.shape;
    const cache = opts.cache ?? null;
    const offset = cache ? cache.length : 0;
    if (cache && (offset + T > cache.max_len || cache.batch !== B)) {
      throw new RangeError(
        `Cannot run the model: ${T} new tokens at position ${offset} exceed the cache (${cache.max_len} positions, batch ${cache.batch})`,
      );
    }
    if (offset + T > c.max_position_embeddings && c.position === "learned") {
      throw new RangeError(
        `Cannot run the model: sequence length ${
          offset + T
        } exceeds max_position_embeddings ${c.max_position_embeddings}`,
      );
    }
    const flatIds = ids.reshape([B * T]);
    let h = embedding(flatIds, this.p("embed.weight"));
    flatIds.dispose();
    if (opts.neftune?.alpha) {
      const { alpha, seed } = opts.neftune;
      const mag = alpha / Math.sqrt(T * c.hidden_size);
      const noisy = uniformNoise(h, mag, siteSeed(seed, DROPOUT_SITES.neftune, 0));
      release(h);
      h = noisy;
    }
    if (c.position === "learned") {
      const pos = opts.position_ids
        ? opts.position_ids.reshape([B * T])
        : this.backend.fromArray(Array.from({ length: B * T }, (_, i) => offset + (i % T)), [B * T], "i32");
      const pe = embedding(pos, this.p("pos_embed.weight"));
      pos.dispose();
      const h2 = add(h, pe);
      release(h);
      release(pe);
      h = h2;
    }
    h = drop(h, c.embd_pdrop, opts, DROPOUT_SITES.embed, 0);
    const states = opts.output_hidden_states;
    // Checkpointing only pays while recording: under noGrad nothing is kept anyway.
    const ckpt = !!opts.gradient_checkpointing && !cache && isGradEnabled();
    for (let i = 0; i < c.num_hidden_layers; i++) {
      states?.push(h.reshape([B, T, c.hidden_size]));
      if (!ckpt) {
        h = this.#block(i, h, B, T, offset, opts);
        continue;
      }
      // The scope keeps its input for the recompute; `#block` must not free it (keepInput). Its
      // node holds views of the masks and positions the recompute reads.
      const x = h;
      const held = [opts.attention_mask, opts.position_ids, opts.segment_ids];
      h = withViews(held, ([attention_mask, position_ids, segment_ids]) =>
        checkpoint(
          (xi) =>
            this.#block(i, xi, B, T, offset, { ...opts, attention_mask, position_ids, segment_ids }, true),
          [x],
        ));
      releaseAfter(h, x);
    }
    if (cache) cache.length = offset + T;
    const out = this.#norm("final_norm", h);
    release(h);
    states?.push(out.reshape([B, T, c.hidden_size]));
    return out;
  }

  /** A parameter by canonical name. */
  p(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new TypeError(`Cannot find parameter ${name}`);
    return t;
  }

  #opt(name: string): Tensor | undefined {
    return this.params.get(name);
  }

  #norm(prefix: string, x: Tensor): Tensor {
    const c = this.config;
    return c.norm === "rmsnorm"
      ? rmsNorm(x, this.p(`${prefix}.weight`), { eps: c.norm_eps })
      : layerNorm(x, this.p(`${prefix}.weight`), this.#opt(`${prefix}.bias`) ?? null, { eps: c.norm_eps });
  }

  #linear(prefix: string, x: Tensor, opts: ForwardOptions, activation?: "gelu_tanh" | "gelu_erf"): Tensor {
    const q = this.quantized.get(prefix), adapter = this.adapters.get(prefix);
    if (!q && !adapter) {
      // A fully trained weight (modules_to_save) reads x in its backward, and an x off the graph
      // (everything before it frozen) is freed by the block once read: the product's node keeps a
      // view of it, as a LoRA product does.
      const w = this.p(`${prefix}.weight`);
      const xv = needsGrad(w) && !x.node && !x.requiresGrad ? x.reshape(x.shape) : x;
      const y = matmul(xv, w, { transB: true, bias: this.#opt(`${prefix}.bias`), activation });
      if (xv !== x) y.node ? y.node.saved.push(xv) : xv.dispose();
      return y;
    }
    const bias = this.#opt(`${prefix}.bias`), w = q ?? this.p(`${prefix}.weight`);
    const ctx = {
      dropout_seed: adapter && opts.dropout
        ? siteSeed(opts.dropout.seed, DROPOUT_SITES.adapter, fnv1a(prefix))
        : null,
    };
    let y = adapter?.linear?.(x, w, bias, ctx) ?? null;
    if (!y) {
      y = q ? linearQ4(x, q, bias) : matmul(x, w as Tensor, { transB: true, bias });
      if (adapter) {
        const base = y;
        y = adapter.apply(x, base, w, bias, ctx);
        if (y !== base) release(base);
      }
    }
    if (!activation) return y;
    const a = gelu(y, { approximate: activation === "gelu_tanh" ? "tanh" : "none" });
    release(y);
    return a;
  }

  /**
   * Decoder block `i` over `h [B*T, C]`; takes over `h` (frees it once used) unless `keepInput`
   * (a checkpoint scope's input, kept for the recompute).
   */
  #block(
    i: number,
    h: Tensor,
    B: number,
    T: number,
    offset: number,
    opts: ForwardOptions,
    keepInput = false,
  ): Tensor {
    const c = this.config, l = `layers.${i}`;
    const H = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
    const x = this.#norm(`${l}.attn_norm`, h);
    // The norm's backward reads h: when h is off the graph (frozen embeddings) its node owns h.
    const normNode = x.node;
    let q = view(this.#linear(`${l}.attn.q`, x, opts), [B, T, H, D]);
    let k = view(this.#linear(`${l}.attn.k`, x, opts), [B, T, Hkv, D]);
    const v = view(this.#linear(`${l}.attn.v`, x, opts), [B, T, Hkv, D]);
    release(x);
    if (this.invFreq) {
      const ro = {
        inv_freq: this.invFreq,
        position_offset: offset,
        style: c.rope_interleaved ? "interleaved" as const : "rotate_half" as const,
      };
      // rope's backward reads the positions: each node holds its own view of them
      const q2 = withViews([opts.position_ids], ([pos]) => rope(q, { ...ro, position_ids: pos }));
      const k2 = withViews([opts.position_ids], ([pos]) => rope(k, { ...ro, position_ids: pos }));
      release(q);
      release(k);
      q = q2;
      k = k2;
    }
    let a: Tensor;
    const cache = opts.cache;
    const attnDrop: AttentionDropout | null = opts.dropout && c.attention_dropout > 0
      ? { p: c.attention_dropout, seed: siteSeed(opts.dropout.seed, DROPOUT_SITES.attn_probs, i) }
      : null;
    if (cache) {
      writeCache(cache.k[i], k, offset);
      writeCache(cache.v[i], v, offset);
      a = attention(q, cache.k[i], cache.v[i], {
        causal: true,
        q_offset: offset,
        kv_len: offset + T,
        attention_mask: opts.attention_mask ?? null,
        segment_ids: opts.segment_ids ?? null,
        sliding_window: c.sliding_window,
        dropout: attnDrop,
      });
    } else {
      a = attention(q, k, v, {
        causal: true,
        attention_mask: opts.attention_mask ?? null,
        segment_ids: opts.segment_ids ?? null,
        sliding_window: c.sliding_window,
        dropout: attnDrop,
      });
    }
    releaseAfter(a, q, k, v);
    const a2 = view(a, [B * T, H * D]);
    const o = drop(this.#linear(`${l}.attn.o`, a2, opts), c.resid_pdrop, opts, DROPOUT_SITES.attn_resid, i);
    release(a2);
    const h1 = add(h, o);
    // A checkpoint scope's input (keepInput) is freed by the scope.
    if (!keepInput && normNode && !h.node && !h.requiresGrad) normNode.saved.push(h);
    else if (!keepInput) release(h);
    release(o);
    const y = this.#norm(`${l}.mlp_norm`, h1);
    let m: Tensor;
    if (c.mlp === "swiglu") {
      const g = this.#linear(`${l}.mlp.gate`, y, opts), u = this.#linear(`${l}.mlp.up`, y, opts);
      m = swiglu(g, u);
      releaseAfter(m, g, u);
    } else {
      const act = c.hidden_act === "gelu" ? "gelu_erf" : "gelu_tanh";
      if (c.hidden_act === "relu" || c.hidden_act === "silu") {
        throw new TypeError(
          `Cannot run the model: hidden_act ${c.hidden_act} with a plain MLP is not supported`,
        );
      }
      const u = this.#linear(`${l}.mlp.up`, y, opts);
      m = gelu(u, { approximate: act === "gelu_tanh" ? "tanh" : "none" });
      release(u);
    }
    release(y);
    const d = drop(this.#linear(`${l}.mlp.down`, m, opts), c.resid_pdrop, opts, DROPOUT_SITES.mlp_resid, i);
    release(m);
    const h2 = add(h1, d);
    release(h1);
    release(d);
    return h2;
  }

  /** Release every parameter. */
  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    for (const q of this.quantized.values()) q.dispose();
    for (const a of this.adapters.values()) a.dispose?.();
  }
}

/**
 * Dropout at one site in training mode (takes over `x`); `x` itself without the option or at p = 0,
 * so evaluation runs exactly the ops it ran before dropout existed.
 */
function drop(x: Tensor, p: number, opts: ForwardOptions, site: number, layer: number): Tensor {
  if (!opts.dropout || !(p > 0)) return x;
  const y = dropout(x, p, siteSeed(opts.dropout.seed, site, layer));
  release(x);
  return y;
}

/**
 * `f` run with views of the tensors `ts` while recording: the views belong to the node of `f`'s
 * result (disposed after its backward), so its backward, or a checkpointed recompute, may read them
 * after the caller has disposed its own tensors (the Trainer frees a batch once the forward ran).
 */
function withViews(
  ts: readonly (Tensor | null | undefined)[],
  f: (views: (Tensor | undefined)[]) => Tensor,
): Tensor {
  if (!isGradEnabled() || ts.every((t) => !t)) return f(ts.map((t) => t ?? undefined));
  const views = ts.map((t) => t?.reshape(t.shape));
  const y = f(views);
  for (const v of views) {
    if (!v) continue;
    if (y.node) y.node.saved.push(v);
    else v.dispose();
  }
  return y;
}

/** A reshaped view that takes over `t` (released when off the graph). */
function view(t: Tensor, shape: readonly number[]): Tensor {
  const v = t.reshape(shape);
  release(t);
  return v;
}

/**
 * Release inputs of `y` once it no longer needs them. With part of the model frozen (LoRA), an
 * input may be off the graph while `y` is on it and its backward still reads that input: the
 * node of `y` then owns it (disposed after its backward) instead of it being freed now.
 */
function releaseAfter(y: Tensor, ...inputs: Tensor[]): void {
  for (const t of inputs) {
    if (y.node && !t.node && !t.requiresGrad) y.node.saved.push(t);
    else release(t);
  }
}

/** Copy `kv [B, T, Hkv, D]` into `cache [B, max, Hkv, D]` at row `offset` (not recorded). */
function writeCache(cache: Tensor, kv: Tensor, offset: number): void {
  const [B, T, Hkv, D] = kv.shape, max = cache.shape[1];
  const row = Hkv * D;
  if (cache.backend.name === "cpu") {
    for (let b = 0; b < B; b++) {
      cache.data.set(kv.data.subarray(b * T * row, (b + 1) * T * row) as never, (b * max + offset) * row);
    }
    return;
  }
  const gpu = cache.backend.device;
  for (let b = 0; b < B; b++) {
    gpu.copy(kv.buffer, b * T * row * 4, cache.buffer, (b * max + offset) * row * 4, T * row * 4);
  }
}
