/**
 * Training checkpoints: one folder `checkpoints/step-N/` holding everything an exact resume needs,
 * written atomically (into `step-N.tmp-<uuid>/`, then one rename, so a crash never leaves a
 * half-written `step-N/`):
 *
 * - `model.safetensors` + `config.json`: the weights in the Hugging Face layout (`saveModel`); for
 *   an adapter run (LoRA, DoRA, QLoRA) the adapter instead, in PEFT's files
 *   (`adapter_config.json`, `adapter_model.safetensors`), beside the base's `config.json`;
 * - `optimizer.safetensors`: AdamW `exp_avg` / `exp_avg_sq` per parameter (named
 *   `<param>.exp_avg`), the per-parameter step counts and the order in the metadata;
 * - `trainer_state.json`: {@linkcode TrainerState} (global step, epoch, data position, seeds,
 *   scheduler step, best metric, early-stopping counter, log history, and the fingerprints of the
 *   data and tokenizer it was trained on);
 * - `config.yaml`: the resolved {@linkcode TrainingConfig};
 * - the tokenizer files (`tokenizer.json`, ...), when the run has a tokenizer: a checkpoint is
 *   self-contained, a resume never rebuilds the tokenizer.
 *
 * @module
 */
import { basename, join } from "node:path";
import type { AdamW, AdamWState } from "../kernels/optim.ts";
import { toHfConfig } from "../models/config.ts";
import { loadWeights } from "../models/pretrained.ts";
import { saveModel } from "../models/save.ts";
import { openSafetensors, type TensorInput, writeSafetensors } from "../models/formats/safetensors.ts";
import type { Transformer } from "../models/transformer.ts";
import type { DataPosition } from "../data/text_dataset.ts";
import { loadTrainingConfig, saveTrainingConfig, type TrainingConfig } from "./config.ts";
import { loadAdapter, removeAdapter, saveAdapter, trainableParameters } from "./peft.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { findTempLeftovers, writeDirAtomic, writeFileAtomic } from "../util/atomic.ts";
import { readJsonFile } from "../util/json.ts";

/** What `trainer_state.json` holds (Hugging Face `TrainerState` names where they exist). */
export interface TrainerState {
  /** Optimizer updates done. */
  global_step: number;
  /** Fractional epoch: `data_position.epoch + data_position.index / blocks per epoch`. */
  epoch: number;
  /** Where the next batch starts. */
  data_position: DataPosition;
  /** Steps of the run (`max_steps`, or derived from `num_train_epochs`). */
  max_steps: number;
  /** The seeds behind every random choice: init (`seed`) and block order (`data_seed`). */
  rng: { seed: number; data_seed: number };
  /** Schedule position: the learning rate of the next update is `lrAt(scheduler_step)`. */
  scheduler_step: number;
  /** Best value of `metric_for_best_model` so far, or null. */
  best_metric: number | null;
  /** Checkpoint folder of the best metric, or null. */
  best_model_checkpoint: string | null;
  /** Global step of the evaluation that set `best_metric`, or null. */
  best_step: number | null;
  /** Fractional epoch (as `epoch`) of the evaluation that set `best_metric`, or null. */
  best_epoch: number | null;
  /** Evaluations in a row without improvement (HF `EarlyStoppingCallback`). */
  early_stopping_patience_counter: number;
  /** Tokens trained on so far. */
  num_input_tokens_seen: number;
  /** Every log and eval record so far (`metrics.jsonl` lines). */
  log_history: Record<string, number>[];
  /** `TextDataset.fingerprint()` of the training data (absent in checkpoints of older versions). */
  data_fingerprint?: string;
  /** A hash of the tokenizer's vocabulary and special tokens (absent without a tokenizer). */
  tokenizer_fingerprint?: string;
  /** Updates skipped for a non-finite loss or gradient norm (`skip_nonfinite_steps`). */
  nonfinite_steps?: number;
}

/** A checkpoint read back by {@linkcode loadCheckpoint}. */
export interface Checkpoint {
  /** The folder. */
  path: string;
  /** The run's position and history, from `trainer_state.json`. */
  state: TrainerState;
  /** The run's resolved config, from `config.yaml`. */
  config: TrainingConfig;
  /** The optimizer state on the host (entries in save order, named by parameter). */
  optimizer: AdamWState;
}

/** What {@linkcode saveCheckpoint} writes. */
export interface SaveCheckpointOptions {
  /** The model: its full weights are saved, or only its adapters when it has any (PEFT files). */
  model: Transformer;
  /** The optimizer (null for optimizers without state, e.g. plain SGD). */
  optimizer: Pick<AdamW, "state"> | null;
  /** Written as `trainer_state.json`. */
  state: TrainerState;
  /** The resolved run config, written as `config.yaml` (what a resume validates against). */
  config: TrainingConfig;
  /** The tokenizer, saved beside the weights (null: none). */
  tokenizer?: Tokenizer | null;
}

const STEP_DIR = /^step-(\d+)$/;
const CHECKPOINT_FILES = ["trainer_state.json", "config.yaml", "optimizer.safetensors", "config.json"];
/** The weights: the whole model, or the adapter of a LoRA / DoRA / QLoRA run (PEFT files). */
const WEIGHT_FILES = [["model.safetensors"], ["adapter_model.safetensors", "adapter_config.json"]];

/** Which weight files `dir` holds (the adapter's when both), or null. */
async function weightFiles(dir: string): Promise<string[] | null> {
  for (const files of [...WEIGHT_FILES].reverse()) {
    if (await Deno.stat(join(dir, files[0])).then(() => true, () => false)) return files;
  }
  return null;
}

/**
 * Write `root/step-<global_step>/` atomically. An existing folder of that name is replaced.
 * @param root the checkpoints folder (created when missing), e.g. `runs/x/checkpoints`
 * @param opts model, optimizer, trainer state and config
 * @returns the checkpoint folder
 * @throws what the writes throw; the temporary folder is removed first
 */
export async function saveCheckpoint(root: string, opts: SaveCheckpointOptions): Promise<string> {
  return await writeDirAtomic(join(root, `step-${opts.state.global_step}`), async (tmp) => {
    if (opts.model.adapters.size) {
      // An adapter run saves the adapter (PEFT files) and the base's config, not the frozen base.
      await saveAdapter(opts.model, tmp);
      await writeFileAtomic(
        join(tmp, "config.json"),
        JSON.stringify(toHfConfig(opts.model.config), null, 2) + "\n",
      );
    } else await saveModel(opts.model, tmp);
    const st = opts.optimizer ? await opts.optimizer.state() : { entries: [] };
    await writeOptimizerState(join(tmp, "optimizer.safetensors"), st);
    await writeFileAtomic(join(tmp, "trainer_state.json"), JSON.stringify(opts.state, null, 2) + "\n");
    await saveTrainingConfig(opts.config, join(tmp, "config.yaml"));
    if (opts.tokenizer) await opts.tokenizer.save(tmp);
  });
}

/** Write an optimizer state as safetensors (`<name>.exp_avg`, `<name>.exp_avg_sq`, steps in metadata). */
export async function writeOptimizerState(path: string, st: AdamWState): Promise<void> {
  const tensors: Record<string, TensorInput> = {};
  st.entries.forEach((e, i) => {
    const key = e.name || `param_${i}`;
    tensors[`${key}.exp_avg`] = { dtype: "F32", shape: e.shape, data: e.m };
    tensors[`${key}.exp_avg_sq`] = { dtype: "F32", shape: e.shape, data: e.v };
  });
  const order = st.entries.map((e, i) => e.name || `param_${i}`);
  const steps = st.entries.map((e) => e.step);
  await writeSafetensors(path, tensors, {
    metadata: { format: "pt", order: JSON.stringify(order), steps: JSON.stringify(steps) },
  });
}

/** Read what {@linkcode writeOptimizerState} wrote. */
export async function readOptimizerState(path: string): Promise<AdamWState> {
  const r = await openSafetensors(path);
  try {
    const meta = r.metadata ?? {};
    let order: string[], steps: number[];
    try {
      order = JSON.parse(meta.order ?? "[]");
      steps = JSON.parse(meta.steps ?? "[]");
    } catch (e) {
      throw new SyntaxError(`Cannot read ${path}: bad optimizer metadata (${(e as Error).message})`);
    }
    const entries = [];
    for (let i = 0; i < order.length; i++) {
      const m = await r.read(`${order[i]}.exp_avg`, { as: "f32" });
      const v = await r.read(`${order[i]}.exp_avg_sq`, { as: "f32" });
      entries.push({
        name: order[i],
        shape: m.shape,
        step: steps[i],
        m: m.data as Float32Array,
        v: v.data as Float32Array,
      });
    }
    return { entries };
  } finally {
    r.close();
  }
}

/** Options of {@linkcode loadCheckpoint}. */
export interface LoadCheckpointOptions {
  /** Load the weights into this model (its parameter tensors are replaced, trainability kept). */
  model?: Transformer;
  /** Load the moments into this optimizer, matched to `model`'s parameters by name. */
  optimizer?: AdamW;
}

/**
 * Read a checkpoint folder; with `model` / `optimizer`, restore them too.
 * @param dir a `step-N` folder
 * @param opts `model`, `optimizer`
 * @returns state, config and optimizer state
 * @throws {Deno.errors.NotFound} when a file is missing (named)
 * @throws {TypeError} when the optimizer state names a parameter the model lacks, or shapes differ
 */
export async function loadCheckpoint(dir: string, opts: LoadCheckpointOptions = {}): Promise<Checkpoint> {
  const problem = await missingFile(dir);
  if (problem) {
    throw new Deno.errors.NotFound(
      `Cannot resume from checkpoint ${dir}: ${problem}; pick a complete checkpoints/step-N folder`,
    );
  }
  const state = await readTrainerState(dir);
  const config = await loadTrainingConfig(join(dir, "config.yaml"), { warn: () => {} });
  const optimizer = await readOptimizerState(join(dir, "optimizer.safetensors"));
  const model = opts.model;
  if (model && await Deno.stat(join(dir, "adapter_model.safetensors")).then(() => true, () => false)) {
    // An adapter run: the base stays as it is; the adapter is replaced by the checkpoint's.
    removeAdapter(model);
    await loadAdapter(model, dir, { is_trainable: true });
  } else if (model) {
    const params = await loadWeights(dir, model.config, model.backend);
    for (const [name, t] of params) {
      const old = model.params.get(name);
      t.requiresGrad = old?.requiresGrad ?? false;
      model.params.set(name, t);
      old?.dispose();
    }
  }
  if (opts.optimizer) {
    if (!model) throw new TypeError("Cannot load optimizer state without the model: pass model too");
    const byName = new Map(trainableParameters(model).map((p) => [p.name, p]));
    const ps = optimizer.entries.map((e) => {
      const p = byName.get(e.name) ?? model.params.get(e.name);
      if (!p) {
        throw new TypeError(`Cannot load optimizer state of ${dir}: the model has no parameter ${e.name}`);
      }
      return p;
    });
    opts.optimizer.loadState(ps, optimizer);
  }
  return { path: dir, state, config, optimizer };
}

/** What makes `dir` incomplete (a missing file), or null. */
async function missingFile(dir: string): Promise<string | null> {
  for (const f of CHECKPOINT_FILES) {
    if (!(await Deno.stat(join(dir, f)).then(() => true, () => false))) return `${f} is missing`;
  }
  const weights = await weightFiles(dir);
  if (!weights) return "model.safetensors (or an adapter's adapter_model.safetensors) is missing";
  for (const f of weights) {
    if (!(await Deno.stat(join(dir, f)).then(() => true, () => false))) return `${f} is missing`;
  }
  return null;
}

/**
 * Read a checkpoint's `trainer_state.json` (named in every error).
 * @param dir a `step-N` folder
 * @returns the state
 * @throws {SyntaxError} naming the file, line and column when it is not a trainer state
 */
export async function readTrainerState(dir: string): Promise<TrainerState> {
  const path = join(dir, "trainer_state.json");
  const s = await readJsonFile(path) as TrainerState;
  const ok = s !== null && typeof s === "object" && Number.isSafeInteger(s.global_step) &&
    s.global_step >= 0 &&
    typeof s.data_position === "object" && s.data_position !== null && Array.isArray(s.log_history);
  if (!ok) {
    throw new SyntaxError(
      `Cannot parse ${path}: it lacks global_step, data_position or log_history; it is not a trainer state`,
    );
  }
  return s;
}

/**
 * Check that a checkpoint folder is complete and readable without loading it: every file present,
 * `trainer_state.json` and `config.yaml` parse, and the safetensors headers fit their files (a
 * truncated or corrupt write is caught).
 * @param dir a `step-N` folder
 * @returns null when it verifies, else what is wrong (naming the file)
 */
export async function verifyCheckpoint(dir: string): Promise<string | null> {
  const problem = await missingFile(dir);
  if (problem) return problem;
  try {
    await readTrainerState(dir);
    await loadTrainingConfig(join(dir, "config.yaml"), { warn: () => {} });
    const weights = (await weightFiles(dir))![0];
    for (const f of [weights, "optimizer.safetensors"]) (await openSafetensors(join(dir, f))).close();
    return null;
  } catch (e) {
    // The readers' own fixes ("re-download it") do not fit a checkpoint: say what is wrong only.
    return (e as Error).message.replace(/\s*\n\s*/g, " ").replace(/;? *\(?re-(download|export)[^;]*$/, "");
  }
}

/**
 * The newest checkpoint of `root` that verifies ({@linkcode verifyCheckpoint}); newer ones that do
 * not are reported through `onSkip` and left in place.
 * @param root e.g. `runs/x/checkpoints`
 * @param opts `onSkip(dir, reason)`
 * @returns the folder, or null when none verifies
 */
export async function latestCheckpoint(
  root: string,
  opts: { onSkip?: (dir: string, reason: string) => void } = {},
): Promise<string | null> {
  const all = await listCheckpoints(root);
  for (let i = all.length - 1; i >= 0; i--) {
    const problem = await verifyCheckpoint(all[i]);
    if (problem === null) return all[i];
    opts.onSkip?.(all[i], problem);
  }
  return null;
}

/**
 * Remove what interrupted atomic writes left in a run folder: `checkpoints/step-N.tmp-*` and
 * `model.tmp-*` folders (a killed run can leave one the size of the model).
 * @param out the run folder
 * @returns the removed paths
 */
export async function removeStaleTemps(out: string): Promise<string[]> {
  const stale = [...await findTempLeftovers(out), ...await findTempLeftovers(join(out, "checkpoints"))];
  for (const p of stale) await Deno.remove(p, { recursive: true });
  return stale;
}

/**
 * The complete `step-N` folders of a checkpoints folder, oldest first (temporary folders of an
 * interrupted write are skipped).
 * @param root e.g. `runs/x/checkpoints`
 * @returns folder paths sorted by step; empty when `root` does not exist
 * @example
 * ```ts
 * import { listCheckpoints } from "./checkpoint.ts";
 * const root = await Deno.makeTempDir();
 * for (const d of ["step-10", "step-9", "step-11.tmp-1f2e"]) await Deno.mkdir(`${root}/${d}`);
 * const found = (await listCheckpoints(root)).map((p) => p.slice(root.length + 1));
 * if (found.join() !== "step-9,step-10") throw new Error(found.join());
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function listCheckpoints(root: string): Promise<string[]> {
  const found: [number, string][] = [];
  try {
    for await (const e of Deno.readDir(root)) {
      const m = e.isDirectory ? STEP_DIR.exec(e.name) : null;
      if (m) found.push([Number(m[1]), join(root, e.name)]);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return found.sort((a, b) => a[0] - b[0]).map((f) => f[1]);
}

/**
 * The end of a run with `save_total_limit: 1` and a best checkpoint: every other checkpoint removed,
 * as HF's `Trainer.train` ends (the newest was kept beside the best only so that a run could resume).
 * @param root `output_dir/checkpoints`
 * @param best the best checkpoint's folder
 */
export async function keepOnlyBest(root: string, best: string): Promise<void> {
  for (const p of await listCheckpoints(root)) {
    if (basename(p) !== basename(best)) await Deno.remove(p, { recursive: true });
  }
}

/**
 * Delete the oldest checkpoints beyond `save_total_limit`, never the one named `keep` (the best).
 * @param root the checkpoints folder
 * @param opts `save_total_limit` (null keeps all), `keep`
 * @returns the deleted folders
 */
export async function rotateCheckpoints(
  root: string,
  opts: { save_total_limit: number | null; keep?: string | null },
): Promise<string[]> {
  const limit = opts.save_total_limit;
  if (limit === null || limit <= 0) return [];
  const all = await listCheckpoints(root);
  const keep = opts.keep ? basename(opts.keep) : null;
  // Never the best nor the newest (HF keeps both even with save_total_limit 1).
  const newest = all[all.length - 1];
  const removable = all.filter((p) => basename(p) !== keep && p !== newest);
  const gone = removable.slice(0, Math.max(0, all.length - limit));
  for (const p of gone) await Deno.remove(p, { recursive: true });
  return gone;
}
