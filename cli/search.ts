/**
 * `deno task cli search`: a hyperparameter search from a search YAML through
 * {@linkcode runSearch}: one training run per trial under the study folder, resumable after a kill.
 *
 * @module
 */
import { parseFlags } from "../util/flags.ts";
import { loadSearchConfig, runSearch, type SearchResult } from "../training/search.ts";
import type { CliIO, Command } from "./command.ts";

const USAGE = `usage: deno task cli search --config search.yaml [--json] [--workers N [--queue ADDRESS]]

Searches hyperparameters of a training config (Optuna's samplers and pruner): each trial trains
the base config with sampled fields into <study_dir>/trials/trial-NNNN/. The study is kept in
<study_dir>/study.json: run the same command again after a kill to resume (finished trials are
kept; the interrupted one resumes from its checkpoint, or reruns when it saved none). Writes
results.md, results.json, best_config.yaml and history.svg to the study folder.

options:
  -c, --config FILE    the search config (YAML or JSON), e.g.
                         base_config: run.yaml          # or base: {model: tiny, dataset: ..., ...}
                         space:
                           learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
                           warmup_steps: {type: int, low: 0, high: 100, step: 10}
                           lr_scheduler_type: {type: categorical, choices: [linear, cosine]}
                         metric: eval_loss               # an evaluation metric (default eval_loss)
                         direction: minimize             # or maximize
                         sampler: tpe                    # tpe | random | grid
                         pruner: median                  # median | none
                         n_trials: 20                    # and/or timeout: SECONDS
                         seed: 0
                         study_dir: runs/lr-search     # from the working directory
                       (base_config is read beside the search file; n_trials counts the whole
                       study, finished trials of a resumed one included)
                       optional: tpe: {n_startup_trials: 10, n_ei_candidates: 24} (sampler tpe only),
                       median: {n_startup_trials: 5, n_warmup_steps: 0, interval_steps: 1} (pruner
                       median only); a float's grid_points: N (sampler grid only)
  --json               print results.json instead of the table
  --workers N          run N trials at once, each a job of a queue on a worker process (this
                       command starts N workers on this machine; a worker that dies leaves its
                       trial to another, which resumes it from its checkpoint)
  --queue ADDRESS      the trials' queue: kv:PATH (default kv:<study_dir>/queue.sqlite) or
                       redis://host:port, where workers on other machines may take trials too
                       (\`deno task cli queue work --queue redis://host:port\`; they must reach
                       study_dir at the same path, e.g. a shared filesystem)
  --local_workers M    workers started here (default N; 0: only workers started elsewhere)
  --progress           show each trial's training progress line (in-process trials: not with --workers)
  -h, --help           this text`;

const FLAGS = {
  config: { type: "string", short: "c" },
  json: { type: "boolean" },
  workers: { type: "int", min: 1 },
  queue: { type: "string" },
  local_workers: { type: "int", min: 0 },
  progress: { type: "boolean" },
} as const;

/** The `search` command. */
export const command: Command = {
  summary: "search hyperparameters (TPE / random / grid, median pruning), resumable",
  usage: USAGE,
  run: searchRun,
};

async function searchRun(args: string[], io: CliIO): Promise<void> {
  const v = parseFlags("search", args, FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  if (v.workers === undefined && (v.queue !== undefined || v.local_workers !== undefined)) {
    throw new TypeError("search: --queue and --local_workers go with --workers N");
  }
  if (v.workers !== undefined && v.local_workers !== undefined && v.local_workers > v.workers) {
    // at most N trials run at once, so workers past N would take nothing
    throw new RangeError(
      `search: --local_workers ${v.local_workers} is more than --workers ${v.workers} (the trials run at ` +
        `once); give at most ${v.workers}`,
    );
  }
  if (v.workers !== undefined && v.progress) {
    throw new TypeError(
      "search: --progress shows in-process trials, and --workers runs them in worker processes; drop one",
    );
  }
  if (!v.config) throw new TypeError("search: give --config search.yaml (see `deno task cli search --help`)");
  const config = await loadSearchConfig(v.config, { warn: (l) => io.stderr(`fledge: ${l}\n`) });
  const r = await runSearch(config, {
    log: (l) => io.stderr(`${l}\n`),
    progress: v.progress,
    workers: v.workers,
    queue: v.queue,
    local_workers: v.local_workers,
  });
  if (v.json) return io.stdout(JSON.stringify(r, (_k, x) => Number.isNaN(x) ? null : x) + "\n");
  io.stdout(summary(r) + "\n");
  io.stdout(await Deno.readTextFile(r.files.results_md));
}

function summary(r: SearchResult): string {
  const best = r.best_trial === null
    ? "no trial completed"
    : `best trial ${r.best_trial}: ${r.metric} ${r.best_value} with ${JSON.stringify(r.best_params)}`;
  return `searched ${r.n_trials} trials (${r.n_complete} complete, ${r.n_pruned} pruned, ${r.n_failed} failed; ` +
    `${r.steps_run} steps; stopped by ${r.stopped_by}): ${best} -> ${r.study_dir}`;
}
