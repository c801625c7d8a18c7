/**
 * Private to `search.ts`: the study loop of `runSearch`, each trial trained in this process one
 * after another (`_search_parallel.ts` runs them on queue workers instead).
 * @module
 */
import { join } from "node:path";
import { latestCheckpoint } from "./checkpoint.ts";
import { endTrial, trainTrial } from "./_search_trial.ts";
import { openStudy, type StudyFile, trialDir, trialLine, writeReports, writeStudy } from "./_search_study.ts";
import type { ParamValue, SearchConfig, SearchResult, SuggestOptions, Trial } from "./search.ts";

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

/**
 * The next trial to start, pushed onto the study as `running`, or why none starts: `n_trials`
 * reached, `timeout` passed (seconds since `t0`), or the grid exhausted.
 */
export function nextTrial(
  config: SearchConfig,
  study: StudyFile,
  o: LoopOptions,
  t0: number,
): Trial | SearchResult["stopped_by"] {
  if (config.n_trials !== null && study.trials.length >= config.n_trials) return "n_trials";
  if (config.timeout !== null && (performance.now() - t0) / 1000 >= config.timeout) return "timeout";
  const number = study.trials.length;
  const { sampler, seed, direction, tpe } = config;
  const s = o.suggest(config.space, study.trials, { sampler, seed, number, direction, tpe });
  if (!s) return "grid";
  const t: Trial = { number, state: "running", params: s.params, value: null, intermediate_values: {} };
  if (s.grid_id !== undefined) t.grid_id = s.grid_id;
  study.trials.push(t);
  return t;
}

/** Run or resume the study of `config` (see `runSearch`). */
export async function searchStudy(config: SearchConfig, o: LoopOptions): Promise<SearchResult> {
  const { study, lock } = await openStudy(config, o.log);
  try {
    const t0 = performance.now();
    for (const t of study.trials.filter((t) => t.state === "running")) {
      await runTrial(config, study, t, { resume: true, log: o.log, progress: o.progress });
    }
    let stopped_by: SearchResult["stopped_by"];
    while (true) {
      const t = nextTrial(config, study, o, t0);
      if (typeof t === "string") {
        stopped_by = t;
        break;
      }
      await runTrial(config, study, t, { resume: false, log: o.log, progress: o.progress });
    }
    return await writeReports(config, study.trials, stopped_by);
  } finally {
    await lock.release();
  }
}

/** Train one trial into its folder, reporting to the pruner; updates `t` and study.json. */
async function runTrial(
  c: SearchConfig,
  study: StudyFile,
  t: Trial,
  o: { resume: boolean; log: (line: string) => void; progress: boolean },
): Promise<void> {
  const rel = trialDir(t.number);
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
  let out;
  try {
    out = await trainTrial(c, {
      run_dir: runDir,
      number: t.number,
      params: t.params,
      resume,
      intermediate_values: t.intermediate_values,
      trials: () => Promise.resolve(study.trials),
      report: async (values, note) => {
        t.intermediate_values = values;
        if (note) t.note = note;
        await save();
      },
      log: o.log,
      progress: o.progress,
    });
  } catch (e) {
    endTrial(t, { state: "failed", note: (e as Error).message.replace(/\s*\n\s*/g, " ") });
    await save();
    throw e;
  }
  endTrial(t, out);
  await save();
  o.log(trialLine(c, study.trials, t));
}
