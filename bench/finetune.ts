/**
 * Benchmark: full fine-tuning, LoRA, DoRA and QLoRA (NF4 base weights, double-quantized scales) of
 * one model preset on the same batches, through the real entry points (`createTrainer` +
 * `train()`): step time, tokens/s and the measured peak device memory (`Backend.peakBytes`, with
 * the static part from `memoryReport`). Warm-up steps (pipeline compilation, optimizer state
 * creation) are not timed; each timed step ends with a device sync.
 *
 * Targets, reported and never asserted: a LoRA step at most 0.75x a full fine-tuning step, a
 * QLoRA step at most 1.3x a LoRA step.
 *
 * Prints JSON lines when run standalone (`deno run -A bench/finetune.ts [--quick]`), or through
 * `deno task bench --only finetune`.
 * @module
 */
import { type Backend, createBackend } from "../kernels/backend.ts";
import { presetConfig } from "../models/config.ts";
import { Transformer } from "../models/transformer.ts";
import { TextDataset } from "../data/text_dataset.ts";
import { getTrainingArgs, type TrainingConfig } from "../training/config.ts";
import { type MemoryReport, memoryReport } from "../training/memory.ts";
import { createTrainer } from "../training/trainer.ts";
import { formatBytes } from "../util/format.ts";
import { mulberry32 } from "../util/random.ts";
import { parseFlags } from "../util/flags.ts";

/** The fine-tuning methods compared. */
export type FinetuneMethod = "full" | "lora" | "dora" | "qlora";

/** One benchmark result line. */
export interface FinetuneBenchRecord {
  op: "finetune";
  /** Which weights train: all of them, or a PEFT adapter. */
  method: FinetuneMethod;
  /** Preset, micro-batch and sequence length. */
  shape: string;
  /** Median milliseconds per optimizer step (timed steps only). */
  ms: number;
  tokens_per_s: number;
  /** Elements that train. */
  trainable_params: number;
  /** The backend's peak live bytes over the timed steps. */
  peak_bytes: number;
  /** Weights, adapter, gradients and AdamW moments (`memoryReport` `static`). */
  static_bytes: number;
  /** `peak_bytes - static_bytes`. */
  activation_bytes: number;
  /** Step time over full fine-tuning's (null when `full` was not run). */
  vs_full: number | null;
  /** Step time over LoRA's (null when `lora` was not run). */
  vs_lora: number | null;
  timed_steps: number;
  backend: string;
  /** The GPU adapter (the device, not the PEFT adapter). */
  adapter: string;
}

/** Options of {@linkcode benchFinetune}. */
export interface FinetuneBenchOptions {
  backend?: Backend;
  /** Model preset (default `small`). */
  preset?: "tiny" | "small";
  /** Sequences per step (default 4). */
  B?: number;
  /** Tokens per sequence (default 128). */
  T?: number;
  /** Untimed steps first (default 1). */
  warmup?: number;
  /** Timed steps (default 5). */
  steps?: number;
  /** Methods, in order (default all four). */
  methods?: FinetuneMethod[];
}

const LORA = { r: 16, lora_alpha: 32, lora_dropout: 0, target_modules: "all-linear" } as const;

function methodConfig(method: FinetuneMethod): Partial<TrainingConfig> | Record<string, unknown> {
  switch (method) {
    case "full":
      return { learning_rate: 5e-5 };
    case "lora":
      return { learning_rate: 2e-4, lora: { ...LORA } };
    case "dora":
      return { learning_rate: 2e-4, lora: { ...LORA, use_dora: true } };
    case "qlora":
      return {
        learning_rate: 2e-4,
        lora: { ...LORA },
        quantization: { load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true },
      };
  }
}

/**
 * Train each method for `warmup + steps` steps on the same random-token batches and time the last
 * `steps`.
 * @param opts backend, preset, batch shape, step counts, methods
 * @returns one record per method
 */
export async function benchFinetune(opts: FinetuneBenchOptions = {}): Promise<FinetuneBenchRecord[]> {
  const be = opts.backend ?? await createBackend("auto");
  const preset = opts.preset ?? "small", B = opts.B ?? 4, warmup = opts.warmup ?? 1, steps = opts.steps ?? 5;
  const mc = presetConfig(preset);
  const T = Math.min(opts.T ?? 128, mc.max_position_embeddings);
  // Random tokens, enough blocks that no step ends an epoch: every method sees the same batches.
  const rand = mulberry32(7);
  const ids = Int32Array.from({ length: B * T * (warmup + steps) }, () => Math.floor(rand() * mc.vocab_size));
  const data = new TextDataset(ids, { block_size: T, source: "random tokens" });
  const out: FinetuneBenchRecord[] = [];
  for (const method of opts.methods ?? ["full", "lora", "dora", "qlora"]) {
    const model = Transformer.init(mc, be, { seed: 1 });
    const output_dir = await Deno.makeTempDir({ prefix: "fledge-bench-finetune-" });
    const times: number[] = [];
    let t0 = 0, mem: MemoryReport | null = null;
    const config = getTrainingArgs({
      output_dir,
      max_steps: warmup + steps,
      per_device_train_batch_size: B,
      max_seq_length: T,
      logging_steps: warmup + steps,
      save_strategy: "no",
      report_to: [],
      seed: 1,
      ...methodConfig(method),
    });
    const trainer = createTrainer({
      model,
      config,
      train_dataset: data,
      progress: false,
      log: () => {},
      hooks: {
        on_train_begin: async () => {
          await be.sync();
          t0 = performance.now();
        },
        // A step is recorded without readback; the sync makes its time the device's.
        on_step_end: async ({ state }) => {
          await be.sync();
          const t = performance.now();
          times.push(t - t0);
          t0 = t;
          if (state.global_step === warmup) be.resetPeak();
          // Measured after the last step, before the run's final writes.
          if (state.global_step === warmup + steps) {
            mem = memoryReport(model, { optimizer: trainer.optimizer, gradients: "step" });
          }
        },
      },
    });
    await trainer.train();
    trainer.dispose();
    model.dispose();
    await Deno.remove(output_dir, { recursive: true });
    // The median: one step slowed by another process on a shared CPU adapter does not move it.
    const timed = times.slice(warmup), sorted = [...timed].sort((a, b) => a - b);
    const ms = (sorted[(sorted.length - 1) >> 1] + sorted[sorted.length >> 1]) / 2;
    if (!mem) throw new Error(`Cannot benchmark ${method}: the run stopped before step ${warmup + steps}`);
    const m: MemoryReport = mem;
    out.push({
      op: "finetune",
      method,
      shape: `${preset} B=${B} T=${T}`,
      ms: +ms.toFixed(2),
      tokens_per_s: +((B * T) / (ms / 1000)).toFixed(1),
      trainable_params: m.trainable_params,
      peak_bytes: m.peak,
      static_bytes: m.static,
      activation_bytes: m.activations,
      vs_full: null,
      vs_lora: null,
      timed_steps: timed.length,
      backend: be.name,
      adapter: be.adapter,
    });
  }
  const msOf = (m: FinetuneMethod) => out.find((r) => r.method === m)?.ms;
  for (const r of out) {
    const full = msOf("full"), lora = msOf("lora");
    r.vs_full = full ? +(r.ms / full).toFixed(3) : null;
    r.vs_lora = lora ? +(r.ms / lora).toFixed(3) : null;
  }
  return out;
}

/** The table printed after the JSON lines, with the targets. */
export function finetuneTable(records: readonly FinetuneBenchRecord[]): string {
  const lines = [
    `${"method".padEnd(7)} ${"shape".padEnd(20)} ${"ms/step".padStart(10)} ${"tok/s".padStart(9)} ` +
    `${"trainable".padStart(11)} ${"peak".padStart(9)} ${"static".padStart(9)} ${"acts".padStart(9)} ` +
    `${"vs full".padStart(8)} ${"vs lora".padStart(8)}`,
  ];
  const ratio = (x: number | null) => (x === null ? "-" : x.toFixed(2)).padStart(8);
  for (const r of records) {
    lines.push(
      `${r.method.padEnd(7)} ${r.shape.padEnd(20)} ${r.ms.toFixed(1).padStart(10)} ${
        r.tokens_per_s.toFixed(0).padStart(9)
      } ${r.trainable_params.toLocaleString("en-US").padStart(11)} ${formatBytes(r.peak_bytes).padStart(9)} ${
        formatBytes(r.static_bytes).padStart(9)
      } ${formatBytes(r.activation_bytes).padStart(9)} ${ratio(r.vs_full)} ${ratio(r.vs_lora)}`,
    );
  }
  const lora = records.find((r) => r.method === "lora"), qlora = records.find((r) => r.method === "qlora");
  const target = (name: string, x: number | null | undefined, max: number) =>
    x === null || x === undefined
      ? ""
      : `${name} ${x.toFixed(2)}x (target <= ${max}x: ${x <= max ? "met" : "missed"})`;
  const t = [target("LoRA/full", lora?.vs_full, 0.75), target("QLoRA/LoRA", qlora?.vs_lora, 1.3)].filter((
    s,
  ) => s);
  if (t.length) lines.push(`targets: ${t.join("; ")}`);
  return lines.join("\n");
}

if (import.meta.main) {
  const { quick } = parseFlags("bench", Deno.args, { quick: { type: "boolean" } });
  const rs = await benchFinetune(quick ? { B: 2, T: 64, steps: 2 } : {});
  for (const r of rs) console.log(JSON.stringify(r));
  console.error(`\n${finetuneTable(rs)}\nadapter: ${rs[0]?.adapter}`);
}
