/**
 * Where a training run's device memory goes, measured rather than estimated: the base weights by
 * storage dtype (f32, f16, 4-bit codes with their scales), the adapter's tensors (LoRA, DoRA),
 * the gradients, the optimizer state, and the backend's measured peak; the peak minus those
 * static bytes is what the step's activations (and kernels' scratch) took at their highest.
 * {@linkcode getMemoryOptimizedConfig} plans before a run; this reports after one.
 *
 * Bytes are counted as the backend counts {@linkcode Backend.liveBytes}: per storage (a tensor
 * and its views, or tied weights, once), on webgpu the pooled buffer's size class, so
 * `static` and `peak` are comparable.
 * @module
 */
import type { Backend } from "../kernels/backend.ts";
import { sizeClass } from "../kernels/gpu.ts";
import type { AdamW } from "../kernels/optim.ts";
import type { Storage, Tensor } from "../kernels/tensor.ts";
import type { Transformer } from "../models/transformer.ts";
import { formatBytes } from "../util/format.ts";
import { adapterParameters, trainableParameters } from "./peft.ts";

/** Options of {@linkcode memoryReport}. */
export interface MemoryReportOptions {
  /**
   * The run's optimizer. An {@linkcode AdamW} holds two f32 moments per trainable tensor; they are
   * counted whether or not its first step has created them yet. Null or absent (SGD): no state.
   */
  optimizer?: AdamW | null;
  /**
   * `"held"` (default): the gradients alive now. `"step"`: one f32 gradient per trainable tensor,
   * what a training step holds at the end of its backward pass (use it after a run, when the
   * Trainer has released them, so that `activations` does not count them).
   */
  gradients?: "held" | "step";
  /** A frozen model the run also holds (DPO's reference copy of the weights): its weights count as static. */
  reference?: Transformer | null;
}

/** What {@linkcode memoryReport} measured; every size in bytes. */
export interface MemoryReport {
  /** `cpu` or `webgpu`. */
  backend: "cpu" | "webgpu";
  /** The adapter's description (`cpu (TypeScript reference)` on cpu). */
  adapter_name: string;
  /** Base weights stored as f32 (embeddings, norms, biases, and the linears unless 4-bit or f16). */
  base_f32: number;
  /** Base weights stored as f16 (frozen, `loadModel` dtype `"f16"`). */
  base_f16: number;
  /** 4-bit base weights (QLoRA): packed codes plus their scales (f32 or double-quantized). */
  base_4bit: number;
  /** What the 4-bit weights would take in f32 (4 bytes per element). */
  base_4bit_as_f32: number;
  /** `base_f32 + base_f16 + base_4bit`. */
  base_total: number;
  /** Base parameters (elements), 4-bit ones included. */
  base_params: number;
  /** Adapter tensors: `lora_A`, `lora_B`, DoRA magnitudes. */
  adapter: number;
  /** Adapter elements. */
  adapter_params: number;
  /** Elements of the tensors that train (`requiresGrad`): all weights in full fine-tuning, the adapter's otherwise. */
  trainable_params: number;
  /** Gradients: held now, or one per trainable tensor (see {@linkcode MemoryReportOptions.gradients}). */
  gradients: number;
  /** Optimizer state (AdamW: `exp_avg` and `exp_avg_sq`). */
  optimizer: number;
  /** The weights of {@linkcode MemoryReportOptions.reference} (0 without one). */
  reference: number;
  /** `base_total + adapter + gradients + optimizer + reference`. */
  static: number;
  /** The backend's {@linkcode Backend.liveBytes} now. */
  live: number;
  /** The backend's {@linkcode Backend.peakBytes}: the most alive since it was created or `resetPeak()` ran. */
  peak: number;
  /**
   * `peak - static` (at least 0): what the measured steps needed beyond the static bytes, i.e.
   * activations and kernels' scratch at the peak. With `gradients: "step"` (or gradients held
   * after a backward) a peak reached before the gradients were all alive, e.g. at the end of the
   * forward pass, makes this a lower bound of the activations.
   */
  activations: number;
}

/** The bytes one storage takes, as the backend counts them. */
function storageBytes(s: Storage): number {
  return s.buffer ? s.buffer.size : s.data ? s.data.byteLength : 0;
}

/** Sum of the storage bytes of `tensors`, each storage once (views and tied weights share one). */
function sumStorage(tensors: Iterable<Tensor>, seen: Set<Storage>): number {
  let n = 0;
  for (const t of tensors) {
    if (t.disposed || seen.has(t.storage)) continue;
    seen.add(t.storage);
    n += storageBytes(t.storage);
  }
  return n;
}

/** Bytes the backend would count for a new f32 tensor of `n` elements. */
function f32Bytes(be: Backend, n: number): number {
  return be.gpu ? sizeClass(Math.max(4 * n, 4)) : 4 * n;
}

/**
 * Measure where a model's device memory goes. Reads no tensor data (nothing is read back or
 * synchronized): it adds up storage sizes and reads the backend's counters. Call
 * `model.backend.resetPeak()` before the steps to measure, and this after them.
 * @param model the model (with its adapter and 4-bit weights, if any)
 * @param opts `optimizer`: the run's AdamW (counts its moments); `gradients`: `"held"` or `"step"`
 * @returns the byte counts; see {@linkcode MemoryReport}
 * @example
 * ```ts
 * import { backward } from "../kernels/autograd.ts";
 * import { createBackend } from "../kernels/backend.ts";
 * import { AdamW } from "../kernels/optim.ts";
 * import { presetConfig } from "../models/config.ts";
 * import { Transformer } from "../models/transformer.ts";
 * import { applyLora, quantizeModel } from "./peft.ts";
 * import { formatMemoryReport, memoryReport } from "./memory.ts";
 * const be = await createBackend("cpu");
 * const model = Transformer.init(presetConfig("tiny"), be);
 * const f32 = memoryReport(model).base_f32;
 * quantizeModel(model, { kind: "nf4", doubleQuant: true }); // QLoRA: NF4 base weights
 * applyLora(model, { r: 8, target_modules: ["q_proj", "v_proj"] });
 * const ids = be.fromArray(Array.from({ length: 64 }, (_, i) => i % 512), [2, 32], "i32");
 * be.resetPeak();
 * backward(model.loss(ids, ids, { gradient_checkpointing: true })); // one step's forward and backward
 * const r = memoryReport(model, { optimizer: new AdamW() });
 * if (r.base_4bit / r.base_4bit_as_f32 > 0.14) throw new Error("NF4 + double quant is ~12.9% of f32");
 * if (r.base_total >= f32 || r.adapter !== 4 * r.adapter_params || r.gradients !== r.adapter) throw new Error();
 * if (r.optimizer !== 2 * r.adapter || !(r.activations > 0)) throw new Error("moments, activations");
 * if (!formatMemoryReport(r).includes("4-bit")) throw new Error("text");
 * ```
 */
export function memoryReport(model: Transformer, opts: MemoryReportOptions = {}): MemoryReport {
  const be = model.backend;
  const seen = new Set<Storage>();
  const adapterTensors = adapterParameters(model);
  const adapter = sumStorage(adapterTensors, seen);
  const adapter_params = adapterTensors.reduce((a, t) => a + t.size, 0);
  const params = [...model.params.values()];
  const base_f16 = sumStorage(params.filter((t) => t.dtype === "f16"), seen);
  const base_f32 = sumStorage(params.filter((t) => t.dtype !== "f16"), seen);
  let base_4bit = 0, quantElems = 0;
  for (const q of model.quantized.values()) {
    base_4bit += sumStorage([q.codes, ...q.scaleTensors], seen);
    quantElems += q.shape[0] * q.shape[1];
  }
  const base_params = params.reduce((a, t) => a + t.size, 0) + quantElems;
  const trainable = trainableParameters(model);
  const trainable_params = trainable.reduce((a, t) => a + t.size, 0);
  const gradients = opts.gradients === "step"
    ? trainable.reduce((a, t) => a + f32Bytes(be, t.size), 0)
    : sumStorage([...params, ...adapterTensors].flatMap((t) => (t.grad ? [t.grad] : [])), seen);
  const optimizer = opts.optimizer ? trainable.reduce((a, t) => a + 2 * f32Bytes(be, t.size), 0) : 0;
  const base_total = base_f32 + base_f16 + base_4bit;
  const reference = opts.reference ? sumStorage(opts.reference.params.values(), seen) : 0;
  const statics = base_total + adapter + gradients + optimizer + reference;
  return {
    backend: be.name,
    adapter_name: be.adapter,
    base_f32,
    base_f16,
    base_4bit,
    base_4bit_as_f32: 4 * quantElems,
    base_total,
    base_params,
    adapter,
    adapter_params,
    trainable_params,
    gradients,
    optimizer,
    reference,
    static: statics,
    live: be.liveBytes,
    peak: be.peakBytes,
    activations: Math.max(0, be.peakBytes - statics),
  };
}

/**
 * One paragraph for `report.md` and logs, in decimal units ({@linkcode formatBytes}); parts that
 * are zero are left out.
 * @param r a {@linkcode memoryReport} result
 * @returns the text, e.g. `Device memory (cpu): base weights 1.1 MB (f32 1.0 MB, 4-bit 120.4 kB
 *   incl. scales = 12.9% of f32; 492,160 parameters), adapter 32.8 kB (8,192 parameters), ...`
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { AdamW } from "../kernels/optim.ts";
 * import { presetConfig } from "../models/config.ts";
 * import { Transformer } from "../models/transformer.ts";
 * import { formatMemoryReport, memoryReport } from "./memory.ts";
 * const model = Transformer.init(presetConfig("tiny"), await createBackend("cpu"));
 * model.setTrainable(true); // full fine-tuning: 492,160 f32 parameters
 * const text = formatMemoryReport(memoryReport(model, { optimizer: new AdamW(), gradients: "step" }));
 * const want = "Device memory (cpu): base weights 2.0 MB (f32 2.0 MB; 492,160 parameters), " +
 *   "gradients 2.0 MB, optimizer state 3.9 MB; 492,160 parameters train. Static 7.9 MB;";
 * if (!text.startsWith(want)) throw new Error(text);
 * ```
 */
export function formatMemoryReport(r: MemoryReport): string {
  const b = formatBytes;
  const count = (n: number) => n.toLocaleString("en-US");
  const parts = [
    r.base_f32 ? `f32 ${b(r.base_f32)}` : "",
    r.base_f16 ? `f16 ${b(r.base_f16)}` : "",
    r.base_4bit
      ? `4-bit ${b(r.base_4bit)} incl. scales = ${
        (100 * r.base_4bit / r.base_4bit_as_f32).toFixed(1)
      }% of f32`
      : "",
  ].filter((s) => s);
  const out = [
    `base weights ${b(r.base_total)} (${parts.join(", ")}; ${count(r.base_params)} parameters)`,
    r.adapter ? `adapter ${b(r.adapter)} (${count(r.adapter_params)} parameters)` : "",
    `gradients ${b(r.gradients)}`,
    r.optimizer ? `optimizer state ${b(r.optimizer)}` : "",
    r.reference ? `reference copy ${b(r.reference)}` : "",
  ].filter((s) => s);
  return `Device memory (${r.backend}): ${out.join(", ")}; ${count(r.trainable_params)} parameters train. ` +
    `Static ${b(r.static)}; measured peak ${b(r.peak)}, of which activations and scratch ${
      b(r.activations)
    }; ${b(r.live)} alive now.`;
}

/**
 * The Trainer's memory paragraph: {@linkcode formatMemoryReport} of `model` with one step's
 * gradients, the optimizer's moments and a loss's frozen `reference` model (DPO's copy).
 */
export function trainingMemory(
  model: Transformer,
  optimizer: AdamW | null | undefined,
  reference: Transformer | null | undefined,
): string {
  return formatMemoryReport(memoryReport(model, { optimizer, gradients: "step", reference }));
}
