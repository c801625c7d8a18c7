/**
 * One recipe run, top to bottom: config -> data -> model (+ adapters) -> train -> evaluate ->
 * report. `tasks/summarization.ts`, `translation.ts` and `classification.ts` name their config
 * (`tasks/configs/*.yaml`) and call {@linkcode runRecipe}; `cli eval` reuses the evaluation.
 *
 * A run folder holds what the Trainer writes (`config.yaml`, `metrics.jsonl`, `checkpoints/`,
 * `model/` and/or `adapter/`, `curves.svg`) plus `recipe.yaml` (the recipe's settings: `cli eval`
 * reads its prompt format and generation settings), `predictions.jsonl`, `metrics.json` and
 * `report.md` with the metrics beside the baselines computed on the same examples.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { stringify as toYaml } from "npm:yaml@^2.9";
import { evaluateTask, taskBaselines, taskPrompts } from "../evaluation/task_eval.ts";
import { type RecipeTarget, writeRecipeReport } from "../evaluation/run_report.ts";
import { leadOracle } from "../evaluation/task_metrics.ts";
import { dictionaryTranslate, learnWordDictionary } from "../data/word_dictionary.ts";
import { splitLinePairs } from "../data/line_pairs.ts";
import type { TaskExample } from "../data/task_data.ts";
import { balanceClasses, withExtraTrain } from "./_extra_train.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";

// Re-exported so the `./tasks` entry point documents the targets it takes on its own.
export type { RecipeTarget };
import { createTrainer } from "../training/trainer.ts";
import { refuseExistingRun } from "../training/run.ts";
import type { TrainingConfig } from "../training/config.ts";
import { acquireLock } from "../util/lock.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import {
  dropIfEmpty,
  evalOptions,
  freeRunDir,
  HEADLINE,
  loadRecipeModel,
  machineName,
  type Recipe,
  recipeData,
  recipeModelDir,
  type RecipeSettings,
  resolveRecipe,
  sftDataset,
  TASK_METRICS,
} from "./_recipe.ts";

/** Options of {@linkcode runRecipe}. */
export interface RunRecipeOptions {
  /** Checkpoint and stop on SIGINT / SIGTERM (the command line sets it). */
  handle_signals?: boolean;
  /** Progress lines (default true). */
  progress?: boolean;
  /** Status lines (default stderr). */
  log?: (line: string) => void;
  /** The README's reference numbers to compare with (name -> metric and value). */
  targets?: Record<string, RecipeTarget>;
  /** The report's title. */
  title?: string;
}

/** What {@linkcode runRecipe} returns. */
export interface RecipeResult {
  /** The run folder (the resolved default when the config named none). */
  output_dir: string;
  /** The fine-tuned model's metrics on the validation examples (0-100, plus `n`); empty when interrupted. */
  metrics: Record<string, number | string>;
  /** Baseline name (`lead-6`, `identity`, `majority (<label>)`) -> its metrics, same keys; empty when interrupted. */
  baselines: Record<string, Record<string, number>>;
  /** The last logged training loss. */
  final_loss: number;
  /** Wall time of the whole recipe in seconds (data, training, evaluation); 0 when interrupted. */
  seconds: number;
  /** The signal that stopped training early (a checkpoint was saved; resume to go on), else null. */
  interrupted: "SIGINT" | "SIGTERM" | null;
}

/**
 * Refuse, before training, a generation that would run past the model's positions at evaluation:
 * the longest validation prompt (source, or with `split_lines` each line of it, cut to
 * `max_source_tokens`, in the prompt format) plus `max_new_tokens` must fit `max_position_embeddings`.
 */
function checkGenerationRoom(
  s: RecipeSettings,
  examples: readonly TaskExample[],
  positions: number,
  tokenizer: Tokenizer,
  labels: readonly string[] | null,
): void {
  if (s.task === "classification") return;
  const { prompts } = taskPrompts(s.task, examples, tokenizer, evalOptions(s, labels));
  const longest = prompts.reduce((m, p) => Math.max(m, p.length), 0);
  if (longest + s.max_new_tokens > positions) {
    throw new RangeError(
      `Cannot run the ${s.name} recipe: its longest validation prompt has ${longest} tokens ` +
        `(max_source_tokens ${s.max_source_tokens} and the prompt format), so max_new_tokens ` +
        `${s.max_new_tokens} would run past the model's max_position_embeddings ${positions}; ` +
        `set --max_new_tokens ${Math.max(0, positions - longest)} or a smaller --max_source_tokens`,
    );
  }
}

/**
 * Run a recipe from its flat config (recipe fields + `TrainingConfig` fields).
 * @throws {RangeError} / {TypeError} / {SyntaxError} for bad config or data, before training
 */
export async function runRecipe(
  flat: Record<string, unknown>,
  opts: RunRecipeOptions = {},
): Promise<RecipeResult> {
  const t0 = performance.now();
  const log = opts.log ?? ((line: string) => console.error(line));
  // ---- config ----
  const recipe: Recipe = resolveRecipe(flat);
  // runs/<name>, or the first free runs/<name>-N; overwriting or resuming means runs/<name> itself
  const t = recipe.training;
  const fixed = flat.output_dir !== undefined || t.overwrite_output_dir || !!t.resume_from_checkpoint;
  const c = { ...t, output_dir: fixed ? t.output_dir : await freeRunDir(t.output_dir) };
  try {
    return await recipeRun(recipe, c, t0, log, opts);
  } catch (e) {
    if (!fixed) await dropIfEmpty(c.output_dir); // the folder freeRunDir made, never written to
    throw e;
  }
}

/** The body of {@linkcode runRecipe}: data, model, training, evaluation and report into `c.output_dir`. */
async function recipeRun(
  recipe: Recipe,
  c: TrainingConfig,
  t0: number,
  log: (line: string) => void,
  opts: RunRecipeOptions,
): Promise<RecipeResult> {
  const { settings: s } = recipe;
  // an occupied output_dir is refused now, not after the data and a base model's pre-training
  await refuseExistingRun(c);

  // ---- data ----
  const data = await recipeData(s, c.seed);
  const evalExamples = s.max_eval_samples ? data.validation.slice(0, s.max_eval_samples) : data.validation;
  if (!evalExamples.length) {
    throw new RangeError(
      `Cannot run the ${s.name} recipe: ${data.description} has no validation examples; ` +
        (data.validation.length
          ? `raise max_eval_samples`
          : `add --eval_file FILE, or give --dataset a folder with train.* and validation.* files`),
    );
  }
  log(`fledge: ${s.name}: ${data.description}`);
  // Teacher targets when asked: each train summary replaced by the lead closest to it, or each
  // train translation by the source translated word for word (sequence-level distillation).
  let trainExamples = data.train;
  if (s.extra_train) {
    const extra = await withExtraTrain(data, s.extra_train);
    trainExamples = extra.train;
    log(`fledge: ${s.name}: training on ${trainExamples.length} examples: ${extra.description} added`);
  }
  if (s.balance_classes) {
    const n = trainExamples.length;
    trainExamples = balanceClasses(trainExamples, c.seed);
    log(
      `fledge: ${s.name}: balance_classes: ${trainExamples.length - n} copies of smaller classes' examples ` +
        `(${countLabels(trainExamples)})`,
    );
  }
  if (s.split_lines) {
    trainExamples = splitLinePairs(data.train);
    log(
      `fledge: ${s.name}: training on ${trainExamples.length} line pairs from ${data.train.length} pairs ` +
        `(split_lines: each line translated on its own)`,
    );
  }
  if (s.train_targets === "lead_oracle") {
    trainExamples = trainExamples.map((e) => ({ ...e, target: leadOracle(e.source, e.target) }));
    const k = trainExamples.map((e) => e.target.split(" ").length).sort((a, b) => a - b);
    log(
      `fledge: ${s.name}: training on lead-oracle targets (the first k words, median k ${k[k.length >> 1]})`,
    );
  } else if (s.train_targets === "word_dictionary") {
    const dict = learnWordDictionary(data.train, s.word_dictionary);
    trainExamples = trainExamples.map((e) => ({ ...e, target: dictionaryTranslate(e.source, dict) }));
    log(
      `fledge: ${s.name}: training on word-for-word targets (a ${dict.size}-word dictionary learned from the train pairs)`,
    );
  }

  // ---- model (+ adapters: the Trainer attaches the config's lora / quantization sections) ----
  const modelDir = await recipeModelDir(s, c.backend, opts.handle_signals);
  c.model = s.model ?? modelDir; // what config.yaml and adapter_config.json name as the base
  const { model, tokenizer, generation_config: gc } = await loadRecipeModel(modelDir, c.backend);
  try {
    if (s.prompt_style === "chat" && !tokenizer.chat_template) {
      throw new RangeError(
        `Cannot run the ${s.name} recipe: prompt_style chat needs a chat template, and the tokenizer of ` +
          `${modelDir} has none (no chat_template in tokenizer_config.json); use prompt_style plain or a chat model`,
      );
    }
    // the rows scored during training (a tracked task metric) must fit too
    const tracked = c.metric_for_best_model?.replace(/^eval_/, "") ?? "";
    const metricRows = TASK_METRICS[s.task].includes(tracked)
      ? data.validation.slice(0, s.metric_samples)
      : [];
    const scored = [...evalExamples, ...metricRows];
    checkGenerationRoom(s, scored, model.config.max_position_embeddings, tokenizer, data.labels);
    // ---- train (SFT: prompt -> answer, loss on the answer only) ----
    const train = sftDataset(trainExamples, s, c, tokenizer, `${s.name} train`);
    const valid = sftDataset(
      evalExamples.slice(0, Math.max(1, c.max_eval_samples ?? 200)),
      s,
      c,
      tokenizer,
      `${s.name} validation`,
    );
    const trainer = createTrainer({
      model,
      config: c,
      train_dataset: train.dataset,
      eval_dataset: c.eval_strategy === "no" ? null : valid.dataset,
      tokenizer,
      progress: opts.progress,
      handle_signals: opts.handle_signals,
      ...(TASK_METRICS[s.task].includes(tracked)
        ? {
          compute_metrics: async (m) => {
            const r = await evaluateTask(m, tokenizer, s.task, metricRows, evalOptions(s, data.labels, gc));
            return Object.fromEntries(
              Object.entries(r.metrics).filter(([, v]) => typeof v === "number"),
            ) as Record<
              string,
              number
            >;
          },
        }
        : {}),
    });
    const result = await trainer.train();
    const logHistory = trainer.state.log_history;
    trainer.dispose();
    if (result.interrupted) {
      log(
        `fledge: ${s.name}: stopped by ${result.interrupted}; resume with the same settings and ` +
          `resume_from_checkpoint: true, output_dir: ${c.output_dir}`,
      );
      return {
        output_dir: c.output_dir,
        metrics: {},
        baselines: {},
        final_loss: result.final_loss,
        seconds: 0,
        interrupted: result.interrupted,
      };
    }

    // ---- evaluate ----
    const lock = await acquireLock(c.output_dir, { command: `recipe ${s.name}` });
    try {
      log(`fledge: ${s.name}: evaluating on ${evalExamples.length} validation examples`);
      const ev = await evaluateTask(model, tokenizer, s.task, evalExamples, evalOptions(s, data.labels, gc));
      const baselines = taskBaselines(s.task, evalExamples, {
        train_targets: data.train.map((e) => e.target),
        labels: data.labels,
      });
      const seconds = (performance.now() - t0) / 1000;

      // ---- report ----
      const out = c.output_dir;
      // What `cli eval` needs to score the run again from any folder: local paths made absolute,
      // the seed (of its train sample), and the label set its verbalizers were trained on (so a
      // file's integer labels map to these names rather than being scored as "0", "1").
      const local = (p: string | null) => p !== null && p !== "debian" && existsSync(p) ? resolve(p) : p;
      const saved = {
        ...s,
        dataset: local(s.dataset),
        eval_file: local(s.eval_file),
        model: local(s.model),
        ...(data.labels ? { label_names: data.labels } : {}),
        output_dir: resolve(out),
        model_dir: local(modelDir),
        seed: c.seed,
      };
      await writeFileAtomic(join(out, "recipe.yaml"), toYaml(saved));
      await writeFileAtomic(
        join(out, "predictions.jsonl"),
        ev.predictions.map((p) => JSON.stringify(p)).join("\n") + "\n",
      );
      await writeFileAtomic(
        join(out, "metrics.json"),
        JSON.stringify(
          { ...ev.metrics, baselines, wall_seconds: +seconds.toFixed(1), base_model: modelDir },
          null,
          2,
        ) + "\n",
      );
      const numeric = Object.fromEntries(
        Object.entries(ev.metrics).filter(([k, v]) => typeof v === "number" && k !== "n"),
      ) as Record<string, number>;
      await writeRecipeReport(out, {
        title: opts.title ?? `${s.name}: ${s.task}`,
        task: s.task,
        config: recipe.flat,
        data: {
          description: data.description,
          train: data.train.length,
          validation: data.validation.length,
          evaluated: evalExamples.length,
          stats: {
            ...(trainExamples.length !== data.train.length
              ? { "train examples trained on": trainExamples.length }
              : {}),
            "train tokens (SFT rows)": train.tokens,
            "train examples cut to max_seq_length": train.truncated,
          },
        },
        metrics: numeric,
        baselines,
        // the README's targets are on the whole validation split: a subset is not compared with them
        ...(opts.targets && evalExamples.length === data.validation.length ? { targets: opts.targets } : {}),
        examples: ev.predictions, // the report shows the first five "of" all of them
        ...(ev.confusion ? { confusion: ev.confusion, per_class: ev.per_class } : {}),
        log_history: logHistory,
        wall_seconds: seconds,
        machine: machineName(model),
        ...(typeof ev.metrics.bleu_signature === "string" ? { signature: ev.metrics.bleu_signature } : {}),
      }, { png: s.png });
      const head = HEADLINE[s.task], [bname, bm] = Object.entries(baselines)[0];
      log(
        `fledge: ${s.name}: ${head} ${(ev.metrics[head] as number).toFixed(2)} vs ${bname} ${
          bm[head].toFixed(2)
        } ` +
          `(${evalExamples.length} validation examples, ${seconds.toFixed(0)} s) -> ${out}`,
      );
      return {
        output_dir: out,
        metrics: ev.metrics,
        baselines,
        final_loss: result.final_loss,
        seconds,
        interrupted: null,
      };
    } finally {
      await lock.release();
    }
  } finally {
    model.dispose();
  }
}

/** `label n, label n` of examples, in order of first appearance. */
function countLabels(examples: readonly TaskExample[]): string {
  const n = new Map<string, number>();
  for (const e of examples) n.set(e.target, (n.get(e.target) ?? 0) + 1);
  return [...n].map(([k, v]) => `${k} ${v}`).join(", ");
}
