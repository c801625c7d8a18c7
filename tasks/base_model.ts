/**
 * The recipes' offline base model: a small decoder pre-trained on the Debian text (the English and
 * German text of the four Debian tasks' train splits, never validation or test), trained the first
 * time a recipe needs it, then cached, keyed by its config and the data, and reused by every recipe.
 *
 * Reads top to bottom: config -> cache lookup -> data (documents) -> tokenizer -> model -> train ->
 * save (atomically, under a lock so two recipes started together train it once).
 *
 * The documents are Debian's own shapes: a package's synopsis line followed by its long description
 * (the `Description` field of a control file), the German DDTP descriptions alone, and the
 * classification texts; exact repeats dropped.
 *
 * @module
 */
import { join } from "node:path";
import { createBackend } from "../kernels/backend.ts";
import { type DebianRecord, debianRoot, loadDebian, requireDebianFiles } from "../data/debian.ts";
import { buildTextDatasets } from "../data/text_dataset.ts";
import { type ModelConfig, presetConfig, withTokenIds } from "../models/config.ts";
import { loadModel } from "../models/pretrained.ts";
import { saveModel } from "../models/save.ts";
import { trainBpeTokenizer } from "../models/tokenizer/bpe.ts";
import { loadTokenizer, type Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { Transformer } from "../models/transformer.ts";
import { Problems, show } from "../util/problems.ts";
import { getTrainingArgs } from "../training/config.ts";
import { createTrainer } from "../training/trainer.ts";
import { latestCheckpoint } from "../training/checkpoint.ts";
import { writeDirAtomic, writeFileAtomic } from "../util/atomic.ts";
import { acquireLock } from "../util/lock.ts";
import { fledgeCacheDir } from "../util/cache.ts";

/** What the base model is: its shape, tokenizer and pre-training budget. */
export interface BaseModelConfig {
  /** Size of the BPE vocabulary trained for the model, special tokens included (default 4096). */
  vocab_size: number;
  /** Model width (default 128); `head_dim` is `hidden_size / num_attention_heads`. */
  hidden_size: number;
  /** Decoder blocks (default 4). */
  num_hidden_layers: number;
  /** Attention heads, with as many key/value heads (no GQA; default 4). */
  num_attention_heads: number;
  /** MLP inner width of the SwiGLU blocks (default 384). */
  intermediate_size: number;
  /** Context length (the recipes' prompt + answer must fit). */
  max_position_embeddings: number;
  /** Tokens per pre-training row. */
  block_size: number;
  /** Rows per pre-training step (default 16). */
  per_device_train_batch_size: number;
  /** Pre-training optimizer steps (default 400). */
  max_steps: number;
  /** Peak learning rate of the cosine schedule with warmup (default 3e-3). */
  learning_rate: number;
  /** Characters of text the tokenizer is trained on (a sample of the documents). */
  tokenizer_chars: number;
  /**
   * Every n-th pre-training document repeats its first paragraph right after it ("P\nP\n..."; 0 =
   * none, the default). Copying a span seen a moment ago is what translation (the source into its
   * word-for-word target) leans on. Measured with 3 (2 CPU cores): translation's fine-tuning loss
   * fell faster (1.84 at step 175 instead of 2.33), but the other recipes scored less (sst2 96.15
   * instead of 97.25, debian-sections 75.67 instead of 76.62, summarization ROUGE-L 21.98 instead of
   * 22.49): fewer fresh tokens in the same 400 steps. So it is off by default.
   */
  repeat_paragraph_every: number;
  /** Seed of the weight init and of the Trainer's data order (default 1). */
  seed: number;
}

/**
 * The default base model: ~1.4M parameters, a 4096-id BPE vocabulary, 400 steps of 16 x 128
 * tokens (about 0.8M tokens); chosen so that pre-training takes under 10 minutes on a 2-core CPU
 * WebGPU adapter (llvmpipe), leaving a recipe's fine-tuning and evaluation the rest of its 20.
 */
export const BASE_MODEL_DEFAULTS: Readonly<BaseModelConfig> = Object.freeze({
  vocab_size: 4096,
  hidden_size: 128,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  intermediate_size: 384,
  max_position_embeddings: 512,
  block_size: 128,
  per_device_train_batch_size: 16,
  max_steps: 400,
  learning_rate: 3e-3,
  tokenizer_chars: 3_000_000,
  repeat_paragraph_every: 0,
  seed: 1,
});

/** Options of {@linkcode ensureBaseModel}. */
export interface BaseModelOptions {
  /** Overrides of {@linkcode BASE_MODEL_DEFAULTS}. */
  config?: Partial<BaseModelConfig>;
  /** The Debian datasets folder (default {@linkcode debianRoot}). */
  root?: string;
  /**
   * Where base models are kept (default `$FLEDGE_CACHE_DIR/base-models`, else
   * `$XDG_CACHE_HOME/fledge/base-models`, else `~/.cache/fledge/base-models`).
   */
  cache_dir?: string;
  /** Backend to pre-train on when the model is not cached (default `"auto"`: WebGPU, else cpu). */
  backend?: "webgpu" | "cpu" | "auto";
  /** One-line status messages (default: stderr). */
  log?: (line: string) => void;
  /** Show the Trainer's progress line while pre-training (default true). */
  progress?: boolean;
  /**
   * Stop pre-training at SIGINT / SIGTERM with a checkpoint that the next call resumes from,
   * throwing {@linkcode PretrainInterrupted} (default false: the process's own handling).
   */
  handle_signals?: boolean;
}

/** Pre-training stopped by a signal; its checkpoint (in `<cache>/<key>.partial`) is resumed next time. */
export class PretrainInterrupted extends Error {
  /** The signal. */
  readonly signal: "SIGINT" | "SIGTERM";
  constructor(signal: "SIGINT" | "SIGTERM", message: string) {
    super(message);
    this.name = "PretrainInterrupted";
    this.signal = signal;
  }
}

/** What {@linkcode ensureBaseModel} returns. */
export interface BaseModelInfo {
  /** The Hugging Face folder (config.json, model.safetensors, tokenizer files). */
  dir: string;
  /** True when this call pre-trained it, false when it came from the cache. */
  trained: boolean;
  /** The complete config the model was built and trained with (defaults merged with overrides). */
  config: BaseModelConfig;
  /** Final pre-training loss (as recorded when it was trained). */
  final_loss: number;
  /** Wall time of pre-training in seconds, tokenizer training and data preparation included. */
  training_seconds: number;
  /** Tokens seen in pre-training: `max_steps × per_device_train_batch_size × block_size`. */
  tokens: number;
}

/** The default cache folder of base models. */
export function baseModelCacheDir(): string {
  const dir = fledgeCacheDir();
  if (dir) return join(dir, "base-models");
  throw new RangeError(
    "Cannot locate the base-model cache: neither XDG_CACHE_HOME nor HOME is set; pass cache_dir",
  );
}

const TRAIN_FILES = [
  "summarization/train.jsonl",
  "translation/train.jsonl",
  "classification/train.jsonl",
  "classification-binary/train.jsonl",
];

/** The cache key: the config and the size of every train file it reads (v2 of the recipe). */
async function cacheKey(config: BaseModelConfig, root: string): Promise<string> {
  const sizes = await Promise.all(TRAIN_FILES.map(async (f) => (await Deno.stat(join(root, f))).size));
  // without repeats, the key of the versions before repeat_paragraph_every: their caches stay valid
  const { repeat_paragraph_every, ...rest } = config;
  const keyed = repeat_paragraph_every ? config : rest;
  // v2: config.json carries the tokenizer's special ids (v1 had the tiny preset's bos 1, eos 2, pad 0)
  const text = JSON.stringify({ v: 2, config: keyed, files: TRAIN_FILES, sizes });
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return [...hash.slice(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The pre-training documents: synopsis + long description per package (summarization), the German
 * long descriptions and synopses (translation), the classification texts; exact repeats dropped;
 * in a fixed shuffled order.
 */
export async function baseModelDocuments(root: string = debianRoot()): Promise<string[]> {
  const seen = new Set<string>(), docs: string[] = [];
  const add = (s: string) => {
    const t = s.trim();
    if (t && !seen.has(t)) {
      seen.add(t);
      docs.push(t);
    }
  };
  const rows = (task: Parameters<typeof loadDebian>[0]) => loadDebian(task, "train", { root });
  for (const r of await rows("summarization") as { document: string; summary: string }[]) {
    add(`${r.summary}\n${r.document}`);
  }
  const english = new Set(docs.map((d) => d.slice(d.indexOf("\n") + 1)));
  for (const r of await rows("translation") as { en: string; de: string; level: string }[]) {
    if (r.level === "long" && !english.has(r.en)) add(r.en);
    add(r.de);
  }
  for (const task of ["classification", "classification-binary"] as const) {
    for (const r of await rows(task) as DebianRecord[]) {
      const text = (r as { text: string }).text;
      if (!english.has(text)) add(text);
    }
  }
  // Deterministic interleaving (Fisher-Yates on a fixed LCG): German and English mixed in every block.
  let s = 12345;
  for (let i = docs.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [docs[i], docs[j]] = [docs[j], docs[i]];
  }
  return docs;
}

/**
 * Every `every`-th document with its first paragraph of 8 to 60 words repeated right after that
 * paragraph (0: the documents as they are): the copy follows within about 80 tokens, mostly in the
 * same pre-training block.
 */
export function withRepeatedParagraph(docs: readonly string[], every: number): string[] {
  if (!every) return [...docs];
  return docs.map((d, i) => {
    if (i % every) return d;
    const lines = d.split("\n");
    const at = lines.findIndex((l) => {
      const n = l.split(" ").length;
      return n >= 8 && n <= 60;
    });
    return at < 0 ? d : [...lines.slice(0, at + 1), ...lines.slice(at)].join("\n");
  });
}

/**
 * The base model's folder: from the cache, or pre-trained now (and cached) when there is none for
 * this config and data. Says which in one line.
 *
 * @param opts config overrides, data root, cache folder, backend, log
 * @returns where it is and how it was trained
 * @throws {RangeError} for a config that does not validate
 * @example
 * ```ts ignore
 * import { ensureBaseModel } from "./base_model.ts";
 * const base = await ensureBaseModel(); // minutes the first time, then instant
 * console.log(base.dir);
 * ```
 */
export async function ensureBaseModel(opts: BaseModelOptions = {}): Promise<BaseModelInfo> {
  const config = resolveBaseModelConfig(opts.config);
  const root = opts.root ?? debianRoot();
  requireDebianFiles("pre-train the Debian base model", TRAIN_FILES, root);
  const log = opts.log ?? ((line: string) => console.error(line));
  const cache = opts.cache_dir ?? baseModelCacheDir();
  const dir = join(cache, await cacheKey(config, root));
  const cached = await readInfo(dir);
  if (cached) {
    log(
      `fledge: base model: reusing ${dir} (pre-trained on the Debian train text, loss ${
        cached.final_loss.toFixed(3)
      })`,
    );
    return { ...cached, dir, trained: false };
  }
  await Deno.mkdir(cache, { recursive: true });
  const lock = await acquireLock(cache, { command: "base-model" });
  try {
    const again = await readInfo(dir); // trained by another process while we waited
    if (again) return { ...again, dir, trained: false };
    // ~45 steps a minute at width 128, about twice that at 64 (llvmpipe, 2 idle CPU cores: the
    // default 400 steps in 7 min 49 s, translation's 800 steps of width 64 in 8 min 37 s)
    const perMinute = 45 * 128 / config.hidden_size;
    log(
      `fledge: base model: none cached for this config; pre-training on the Debian train text (once, ~${
        Math.ceil(config.max_steps / perMinute)
      } min on a 2-core CPU adapter) -> ${dir}`,
    );
    const info = await pretrain(config, root, dir, opts);
    return { ...info, dir, trained: true };
  } finally {
    await lock.release();
  }
}

/**
 * The complete base-model config for `overrides` (a recipe's `base_model`): the defaults merged
 * with them, every field known and a number in range, each problem in one line.
 * @throws {RangeError} or {@linkcode TypeError} naming `base_model.<field>` and the fix
 * @example
 * ```ts
 * import { resolveBaseModelConfig } from "./base_model.ts";
 * if (resolveBaseModelConfig({ hidden_size: 64 }).num_hidden_layers !== 4) throw new Error("merged");
 * ```
 */
export function resolveBaseModelConfig(overrides: Partial<BaseModelConfig> = {}): BaseModelConfig {
  const config: BaseModelConfig = { ...BASE_MODEL_DEFAULTS, ...overrides };
  checkBaseModelConfig(config);
  return config;
}

/** Every field known and a number in range, each problem in one line (`base_model.<field>`). */
function checkBaseModelConfig(c: BaseModelConfig): void {
  const p = new Problems();
  for (const [k, v] of Object.entries(c)) {
    const field = `base_model.${k}`;
    if (!(k in BASE_MODEL_DEFAULTS)) {
      p.range(field, `is not a base-model field; known: ${Object.keys(BASE_MODEL_DEFAULTS).join(", ")}`);
    } else if (typeof v !== "number" || !Number.isFinite(v)) p.type(field, `${show(v)} is not a number`);
    else if (k === "learning_rate") {
      if (v <= 0) p.range(field, `${v} must be > 0`);
    } else {
      const min = k === "repeat_paragraph_every" ? 0 : 1;
      if (!Number.isInteger(v) || v < min) p.range(field, `${v} must be a whole number >= ${min}`);
    }
  }
  const { hidden_size: h, num_attention_heads: n } = c;
  if (Number.isInteger(h) && Number.isInteger(n) && n >= 1 && h % n !== 0) {
    p.range(
      "base_model.hidden_size",
      `${h} is not a multiple of num_attention_heads ${n} (head_dim = hidden_size / heads)`,
    );
  }
  p.throwIfAny("Cannot build the base model", "--base_model");
}

/** The `base.json` of a cached base model, or null when there is none (or it is incomplete). */
async function readInfo(dir: string): Promise<Omit<BaseModelInfo, "dir" | "trained"> | null> {
  try {
    const j = JSON.parse(await Deno.readTextFile(join(dir, "base.json")));
    return j && typeof j.final_loss === "number" ? j : null;
  } catch {
    return null;
  }
}

/** The model config of a base model. */
export function baseModelConfig(c: BaseModelConfig): ModelConfig {
  return presetConfig("tiny", {
    vocab_size: c.vocab_size,
    hidden_size: c.hidden_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: c.num_attention_heads,
    head_dim: c.hidden_size / c.num_attention_heads,
    intermediate_size: c.intermediate_size,
    max_position_embeddings: c.max_position_embeddings,
  });
}

async function pretrain(
  config: BaseModelConfig,
  root: string,
  dir: string,
  opts: BaseModelOptions,
): Promise<Omit<BaseModelInfo, "dir" | "trained">> {
  const t0 = performance.now();
  // ---- data ----
  const docs = await baseModelDocuments(root);
  const sample: string[] = [];
  for (let i = 0, n = 0; i < docs.length && n < config.tokenizer_chars; i++) {
    sample.push(docs[i]);
    n += docs[i].length;
  }
  // ---- tokenizer ----
  const tokenizer = await trainBpeTokenizer(sample, {
    vocab_size: config.vocab_size,
    special_tokens: ["<|endoftext|>", "<|pad|>"],
    pad_token: "<|pad|>",
    model_max_length: config.max_position_embeddings,
  });
  const { train } = buildTextDatasets(withRepeatedParagraph(docs, config.repeat_paragraph_every), {
    tokenizer,
    block_size: config.block_size,
    source: "Debian train text",
  });
  // ---- model, train ----
  const be = await createBackend(opts.backend ?? "auto");
  const model = Transformer.init(withTokenIds(baseModelConfig(config), tokenizer), be, { seed: config.seed });
  // Checkpoints beside the cache entry: a run stopped by a signal (or a crash) resumes from there
  // rather than from step 0 (it had trained in a temporary folder, lost at the first Ctrl-C).
  const work = `${dir}.partial`;
  const resume = await latestCheckpoint(join(work, "checkpoints")).then((d) => d !== null, () => false);
  let finalLoss = NaN, done = false;
  try {
    const trainer = createTrainer({
      model,
      config: getTrainingArgs({
        output_dir: work,
        max_steps: config.max_steps,
        per_device_train_batch_size: config.per_device_train_batch_size,
        max_seq_length: config.block_size,
        learning_rate: config.learning_rate,
        lr_scheduler_type: "cosine",
        warmup_steps: Math.min(50, Math.ceil(config.max_steps / 10)),
        weight_decay: 0.1,
        adam_beta2: 0.95,
        max_grad_norm: 1,
        logging_steps: Math.max(1, Math.min(50, config.max_steps)),
        save_strategy: "steps",
        save_steps: Math.max(25, Math.ceil(config.max_steps / 8)),
        save_total_limit: 1,
        resume_from_checkpoint: resume ? true : null,
        overwrite_output_dir: !resume,
        report_to: [],
        seed: config.seed,
      }),
      train_dataset: train,
      progress: opts.progress ?? true,
      log: (line) => {
        if (line.startsWith("resume: ")) (opts.log ?? console.error)(`fledge: base model: ${line}`);
      },
      handle_signals: opts.handle_signals ?? false,
    });
    const result = await trainer.train();
    finalLoss = result.final_loss;
    trainer.dispose();
    if (result.interrupted) {
      throw new PretrainInterrupted(
        result.interrupted,
        `stopped by ${result.interrupted} while pre-training the base model, at step ${result.metrics_summary.global_step} ` +
          `of ${config.max_steps}; its checkpoint is in ${work}, and the next run resumes from there`,
      );
    }
    // ---- save (atomically: a half-written folder is never found as a cached model) ----
    const info = {
      config,
      final_loss: finalLoss,
      training_seconds: (performance.now() - t0) / 1000,
      tokens: config.max_steps * config.per_device_train_batch_size * config.block_size,
    };
    await writeDirAtomic(dir, async (tmp) => {
      await saveModel(model, tmp);
      await tokenizer.save(tmp);
      await writeFileAtomic(join(tmp, "base.json"), JSON.stringify(info, null, 2) + "\n");
    });
    done = true;
    return info;
  } finally {
    model.dispose();
    if (done) await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/** Load a base model folder (model + tokenizer) on a backend. */
export async function loadBaseModel(
  dir: string,
  opts: { backend?: "webgpu" | "cpu" | "auto" } = {},
): Promise<{ model: Transformer; tokenizer: Tokenizer }> {
  const be = await createBackend(opts.backend ?? "auto");
  return { model: await loadModel(dir, { backend: be }), tokenizer: await loadTokenizer(dir) };
}
