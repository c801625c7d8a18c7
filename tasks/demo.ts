/**
 * The demo recipe: pre-train the `tiny` model (narrowed to width 64, with a 2048-id vocabulary) on
 * the Debian package descriptions with the real Trainer, then sample from it. Reads top to
 * bottom: config, data + model + train (the Trainer builds them from the config), evaluate
 * (sample), report.
 *
 * Writes one run folder: `config.yaml`, `metrics.jsonl`, `checkpoints/step-N/`, `model/` (Hugging
 * Face layout + tokenizer), `curves.svg`, `report.md`, `samples.txt`.
 *
 * @module
 */
import { join } from "node:path";
import { createBackend } from "../kernels/backend.ts";
import { debianRoot, requireDebianFiles } from "../data/debian.ts";
import { generate } from "../models/generate.ts";
import { loadModel } from "../models/pretrained.ts";
import { loadTokenizer } from "../models/tokenizer/tokenizer.ts";
import { getTrainingArgs, type TrainingConfig } from "../training/config.ts";
import { runTraining } from "../training/run.ts";
import type { TrainResult } from "../training/trainer.ts";
import { acquireLock } from "../util/lock.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { dropIfEmpty, freeRunDir } from "./_recipe.ts";

/** Options of {@linkcode runDemo} (Hugging Face names). */
export interface DemoOptions {
  /**
   * The run folder. Default `runs/demo`, or the first free `runs/demo-N` when that one is taken: the
   * demo never overwrites a run unasked. A given folder that holds a run is refused unless
   * `overwrite_output_dir`.
   */
  output_dir?: string;
  /** Replace the run in `output_dir` (default false). */
  overwrite_output_dir?: boolean;
  /** Checkpoint and return on SIGINT / SIGTERM (default false; the command line sets it). */
  handle_signals?: boolean;
  /** Optimizer steps; the run evaluates and checkpoints once, at the last one (default 1200). */
  max_steps?: number;
  /** Blocks per optimizer step (default 8). */
  per_device_train_batch_size?: number;
  /** Tokens per packed training block (`max_seq_length`; default 64). */
  block_size?: number;
  /** Peak learning rate of the cosine schedule, after 10 warmup steps (default 3e-3). */
  learning_rate?: number;
  /** Where to train: `"auto"` (WebGPU when an adapter answers, else cpu; the default), `"webgpu"` or `"cpu"`. */
  backend?: "webgpu" | "cpu" | "auto";
  /** Seed of the weight init, data order and sampling (default 1337). */
  seed?: number;
}

/** What {@linkcode runDemo} returns. */
export interface DemoResult {
  /** The run folder that was written (the resolved default when none was given). */
  output_dir: string;
  /** The last logged training loss. */
  final_loss: number;
  /** Loss on (up to 200 examples of) the validation split at the end; null when no evaluation ran. */
  final_eval_loss: number | null;
  /** The last checkpoint saved (`<output_dir>/checkpoints/step-N`), or null when none was. */
  checkpoint_path: string | null;
  /** The first of {@linkcode DemoResult.samples} (empty when interrupted). */
  sample: string;
  /** One sample per prompt of {@linkcode DEMO_PROMPTS}, each the prompt and its continuation (none when interrupted). */
  samples: string[];
  /** The signal that stopped training early (a checkpoint was saved, no sample drawn), else null. */
  interrupted: "SIGINT" | "SIGTERM" | null;
}

/**
 * Run the demo end to end.
 * @throws {RangeError} for bad options (from the config validation)
 */
export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  // ---- config ----
  // 1,200 steps of the narrowed model below: about 2 minutes on 2 idle CPU cores (110 s measured,
  // 2026-12-06), eval loss 4.93 (2.21 bits per byte). 600 steps of the preset's width 128 took as
  // long (116 s) and reached 5.32 (2.38 bits per byte): this little training is worth more steps of
  // a smaller model than fewer of a larger one.
  const steps = opts.max_steps ?? 1200;
  requireDebianFiles("run the demo", ["summarization/train.jsonl", "summarization/validation.jsonl"]);
  if (opts.overwrite_output_dir && opts.output_dir === undefined) {
    throw new RangeError(
      "Cannot run the demo: overwrite_output_dir replaces a given output_dir, and none is given (the demo " +
        "never overwrites runs/demo: it takes runs/demo-N); add --output_dir DIR or drop --overwrite_output_dir",
    );
  }
  const config = getTrainingArgs({
    output_dir: opts.output_dir ?? await freeRunDir("runs/demo"),
    overwrite_output_dir: opts.overwrite_output_dir ?? false,
    model: "tiny",
    // A 2048-id vocabulary rather than the preset's 512: the samples come out as words in Debian's
    // phrasing ("This package contains the ... library") rather than byte-level fragments. Width 64
    // (2 heads of 32, SwiGLU 172; 230K parameters, most of them the tied embedding) rather than the
    // preset's 128: at the same wall time (2 idle CPU cores, 2026-12-06) width 128 x 600 steps
    // reached 2.38 bits per byte of validation text, width 64 x 1,200 steps 2.21, width 48 x
    // 1,450 steps 2.22 (no faster a step), 3 layers x 1,000 steps 2.23; a 1024-id vocabulary
    // (16-row steps) 2.42, a 4096-id one 2.16 but 20% slower.
    model_config: {
      vocab_size: 2048,
      hidden_size: 64,
      num_attention_heads: 2,
      num_key_value_heads: 2,
      head_dim: 32,
      intermediate_size: 172,
    },
    dataset: join(debianRoot(), "summarization"), // train.jsonl + validation.jsonl
    dataset_text_field: "document",
    max_eval_samples: 200, // the whole validation split costs more than the training
    backend: opts.backend ?? "auto",
    seed: opts.seed ?? 1337,
    max_steps: steps,
    per_device_train_batch_size: opts.per_device_train_batch_size ?? 8,
    per_device_eval_batch_size: 64,
    max_seq_length: opts.block_size ?? 64,
    packing: true, // pre-training: documents concatenated and cut into blocks
    packing_strategy: "wrapped",
    learning_rate: opts.learning_rate ?? 3e-3,
    lr_scheduler_type: "cosine",
    warmup_steps: 10,
    weight_decay: 0.1,
    adam_beta2: 0.95,
    max_grad_norm: 1.0,
    logging_steps: 10,
    eval_strategy: "steps",
    eval_steps: steps,
    save_steps: steps,
  });

  // ---- data, model, train ----
  const result = await runTraining(config, { handle_signals: opts.handle_signals }).catch(async (e) => {
    if (opts.output_dir === undefined) await dropIfEmpty(config.output_dir); // the folder freeRunDir made
    // the demo's own fixes (the Trainer's named resume_from_checkpoint, which the demo does not take)
    const held = e instanceof RangeError && e.message.match(/already holds a run \(([^)]*)\)/);
    if (!held) throw e;
    throw new RangeError(
      `Cannot run the demo: --output_dir ${config.output_dir} already holds a run (${held[1]}); add ` +
        `--overwrite_output_dir, give another --output_dir, or leave it out (the demo takes runs/demo-N)`,
    );
  });
  if (result.interrupted) {
    return {
      output_dir: config.output_dir,
      final_loss: result.final_loss,
      final_eval_loss: result.metrics_summary.eval_loss ?? null,
      checkpoint_path: result.checkpoint_path,
      sample: "",
      samples: [],
      interrupted: result.interrupted,
    };
  }

  // ---- evaluate: sample from the saved model (the run folder locked again while written) ----
  const lock = await acquireLock(config.output_dir, { command: "demo" });
  try {
    return await sampleAndReport(config, result);
  } finally {
    await lock.release();
  }
}

// Cool sampling among the 10 likeliest tokens, with no repeated trigram and seen tokens penalized
// (HF's repetition_penalty): the tiny model's most likely phrasing, which is Debian's ("This package
// contains the Python 3 version of the C++ library."), rather than its rare-token noise (runs of
// made-up acronyms at temperature 0.5, top-k 20) or its loops ("a library for the library for a
// library"). `cli generate` flags.
const SAMPLING = { temperature: 0.4, top_k: 10, repetition_penalty: 1.3, no_repeat_ngram_size: 3 } as const;

/** How the demo's samples start: three of the commonest openings of a Debian long description. */
export const DEMO_PROMPTS: readonly string[] = Object.freeze([
  "This package provides",
  "This package contains",
  "This is a",
]);

/**
 * The sample up to its last whole sentence (a `.`, `!` or `?` followed by a space or the end), so it
 * does not stop mid-word at `max_new_tokens`; unchanged when no sentence ends after `from`.
 * @example
 * ```ts
 * import { wholeSentences } from "./demo.ts";
 * if (wholeSentences("A tool. It is a li", 0) !== "A tool.") throw new Error("cut");
 * if (wholeSentences("A tool for", 0) !== "A tool for") throw new Error("kept");
 * ```
 */
export function wholeSentences(text: string, from = 0): string {
  let end = -1;
  for (const m of text.slice(from).matchAll(/[.!?](?=\s|$)/g)) end = from + m.index! + 1;
  return end > 0 ? text.slice(0, end) : text;
}

async function sampleAndReport(config: TrainingConfig, result: TrainResult): Promise<DemoResult> {
  const modelDir = join(config.output_dir, "model");
  const be = await createBackend(config.backend);
  const model = await loadModel(modelDir, { backend: be });
  const tokenizer = await loadTokenizer(modelDir);
  const gen = await generate(model, DEMO_PROMPTS.map((p) => tokenizer.encode(p)), {
    max_new_tokens: 60, // then cut after its last whole sentence
    do_sample: true,
    ...SAMPLING,
    seed: config.seed,
    tokenizer,
  });
  // each sample is one paragraph: the prompt's line, up to its last whole sentence
  const samples = DEMO_PROMPTS.map((p, i) =>
    wholeSentences((p + (gen.text?.[i] ?? tokenizer.decode(gen.tokens[i]))).split("\n")[0], p.length)
  );
  model.dispose();

  // ---- report ----
  await writeFileAtomic(join(config.output_dir, "samples.txt"), samples.join("\n") + "\n");
  const evalLoss = result.metrics_summary.eval_loss ?? null;
  console.error(
    `demo: loss ${result.final_loss.toFixed(4)}` +
      (evalLoss === null ? "" : `, eval loss ${evalLoss.toFixed(4)}`) +
      ` in ${result.training_time.toFixed(0)} s -> ${config.output_dir}`,
  );
  console.error(["demo: samples:", ...samples.map((x) => `  ${x}`)].join("\n"));
  const dir = config.output_dir;
  console.error(
    [
      "demo: next:",
      `  deno task cli generate --model ${dir}/model --prompt "${DEMO_PROMPTS[0]}" ` +
      `${Object.entries(SAMPLING).map(([k, v]) => `--${k} ${v}`).join(" ")}   sample again`,
      "  deno task train:cnn       fine-tune a summarizer on the Debian data, scored with ROUGE against a baseline",
      "  deno task train:sst2      a classifier by label likelihood (train:wmt translates en -> de)",
      `  deno task cli train --help    your own data and settings; open ${dir}/report.md for this run`,
    ].join("\n"),
  );
  return {
    output_dir: config.output_dir,
    final_loss: result.final_loss,
    final_eval_loss: evalLoss,
    checkpoint_path: result.checkpoint_path,
    sample: samples[0],
    samples,
    interrupted: null,
  };
}
