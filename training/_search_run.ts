/**
 * Private to `search.ts`: the study loop of `runSearch` and one trial as a training run, its
 * evaluations reported to the median pruner through the Trainer's `on_evaluate` hook.
 * @module
 */
import { join } from "node:path";
import { acquireLock } from "../util/lock.ts";
import { latestCheckpoint } from "./checkpoint.ts";
import { type TrainingConfig, validateTrainingConfig } from "./config.ts";
import type { HookContext } from "./hooks.ts";
import { runTraining } from "./run.ts";
import { NonFiniteError } from "./trainer.ts";
import { applyParams } from "./_search_config.ts";
import { medianDecision } from "./_search_prune.ts";
import {
  bestTrial,
  definitionChange,
  definitionOf,
  readStudy,
  type StudyFile,
  writeReports,
  writeStudy,
} from "./_search_study.ts";
import type { ParamValue, SearchConfig, SearchResult, SuggestOptions, Trial, TrialState } from "./search.ts";

/** What the loop needs from `search.ts`. */
export interface LoopOptions {
  log: (line: string) => void;
  progress: boolean;
  suggest: (
    space: SearchConfig["space"],
    trials: readonly Trial[],
    opts: SuggestOptions,
  ) => { params: Record<string, ParamValue>; grid_id?: number } | null;
}

/** Run or resume the study of `config` (see `runSearch`). */
export async function searchStudy(config: SearchConfig, o: LoopOptions): Promise<SearchResult> {
  const { log } = o;
  const dir = config.study_dir;
  await Deno.mkdir(dir, { recursive: true });
  const lock = await acquireLock(dir, { command: "search" });
  try {
    const definition = definitionOf(config);
    const found = await readStudy(dir);
    if (found) {
      const changed = definitionChange(found.definition, definition);
      if (changed) {
        throw new RangeError(
          `Cannot resume the study in ${dir}: its ${changed} differs from this config's; ` +
            `restore it or choose another study_dir`,
        );
      }
      const done = found.trials.filter((t) => t.state !== "running").length;
      log(`search: resuming ${dir}: ${done} finished trials kept, ${found.trials.length - done} to resume`);
    }
    const study: StudyFile = found ?? { format: "fledge-study", version: 1, definition, trials: [] };
    await writeStudy(dir, study);
    const t0 = performance.now();
    for (const t of study.trials.filter((t) => t.state === "running")) {
      await runTrial(config, study, t, { resume: true, log, progress: o.progress });
    }
    let stopped_by: SearchResult["stopped_by"];
    while (true) {
      if (config.n_trials !== null && study.trials.length >= config.n_trials) {
        stopped_by = "n_trials";
        break;
      }
      if (config.timeout !== null && (performance.now() - t0) / 1000 >= config.timeout) {
        stopped_by = "timeout";
        break;
      }
      const number = study.trials.length;
      const s = o.suggest(config.space, study.trials, { ...config, number, tpe: config.tpe });
      if (!s) {
        stopped_by = "grid";
        break;
      }
      const t: Trial = { number, state: "running", params: s.params, value: null, intermediate_values: {} };
      if (s.grid_id !== undefined) t.grid_id = s.grid_id;
      study.trials.push(t);
      await runTrial(config, study, t, { resume: false, log, progress: o.progress });
    }
    return await writeReports(config, study.trials, stopped_by);
  } finally {
    await lock.release();
  }
}

function paramText(params: Record<string, ParamValue>): string {
  return Object.entries(params).map(([k, v]) => `${k}=${typeof v === "number" ? +v.toPrecision(4) : v}`).join(
    " ",
  );
}

/** Train one trial into its folder, reporting to the pruner; updates `t` and study.json. */
async function runTrial(
  c: SearchConfig,
  study: StudyFile,
  t: Trial,
  o: { resume: boolean; log: (line: string) => void; progress: boolean },
): Promise<void> {
  const rel = join("trials", `trial-${String(t.number).padStart(4, "0")}`);
  const runDir = join(c.study_dir, rel);
  const save = () => writeStudy(c.study_dir, study);
  let resume = false;
  if (o.resume) {
    const ck = await latestCheckpoint(join(runDir, "checkpoints")).catch(() => null);
    resume = ck !== null;
    if (!resume) t.intermediate_values = {};
    t.note = resume ? `resumed from ${ck} after an interruption` : "rerun from step 0 after an interruption";
    o.log(`search: trial ${t.number} ${t.note}`);
  }
  t.run_dir = rel;
  t.started ??= new Date().toISOString();
  await save();
  const finish = async (state: TrialState, note?: string) => {
    t.state = state;
    if (note !== undefined) t.note = note;
    t.finished = new Date().toISOString();
    await save();
  };
  let config: TrainingConfig;
  try {
    config = validateTrainingConfig(
      {
        ...applyParams(c.base, t.params),
        output_dir: runDir,
        resume_from_checkpoint: resume,
        overwrite_output_dir: !resume,
      },
      { file: `trial ${t.number}`, warn: () => {} },
    );
  } catch (e) {
    await finish("failed", `invalid config: ${(e as Error).message.split("\n").slice(1).join(" ").trim()}`);
    o.log(`search: trial ${t.number} failed: ${t.note}`);
    return;
  }
  let prunedAt: number | null = null;
  const hooks = {
    on_evaluate: async (ctx: HookContext, rec: Record<string, number>) => {
      const v = rec[c.metric], step = ctx.state.global_step;
      if (typeof v !== "number") {
        const have = Object.keys(rec).filter((k) => k.startsWith("eval_"));
        throw new TypeError(
          `Cannot search on ${c.metric}: evaluations report ${have.join(", ")}; set metric to one of them`,
        );
      }
      t.intermediate_values[step] = v;
      if (c.pruner === "median") {
        const d = medianDecision(t.intermediate_values, study.trials, c.direction, c.median);
        if (d.prune) {
          prunedAt = step;
          t.note = `pruned at step ${step}: ${d.reason}`;
        }
      }
      await save();
      return prunedAt !== null ? { should_training_stop: true } : undefined;
    },
  };
  try {
    const r = await runTraining(config, { progress: o.progress, log: o.log, hooks });
    t.steps = r.metrics_summary.global_step as number;
  } catch (e) {
    if (e instanceof NonFiniteError) {
      t.steps = e.step;
      const last = Object.keys(t.intermediate_values).map(Number).sort((a, b) => b - a)[0];
      t.value = last === undefined ? null : t.intermediate_values[last];
      await finish("pruned", `diverged at step ${e.step} (non-finite)`);
      o.log(`search: trial ${t.number} pruned: ${t.note}`);
      return;
    }
    await finish("failed", (e as Error).message.replace(/\s*\n\s*/g, " "));
    throw e;
  }
  const steps = Object.keys(t.intermediate_values).map(Number).sort((a, b) => a - b);
  if (!steps.length) {
    await finish("failed", "no evaluation ran");
    throw new RangeError(
      `Cannot search: trial ${t.number} ran ${t.steps} steps without an evaluation; set base.eval_steps <= max_steps`,
    );
  }
  t.value = t.intermediate_values[steps[steps.length - 1]];
  await finish(prunedAt !== null ? "pruned" : "complete");
  const best = bestTrial(study.trials, c.direction);
  o.log(
    `search: trial ${t.number} ${t.state} ${c.metric} ${t.value.toFixed(4)} after ${t.steps} steps (${
      paramText(t.params)
    })${best ? `; best trial ${best.number} ${best.value!.toFixed(4)}` : ""}`,
  );
}
