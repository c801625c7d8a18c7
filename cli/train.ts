/**
 * `deno task cli train`: train from a YAML/JSON {@linkcode TrainingConfig} plus `--<field> value`
 * overrides with the Hugging Face names, through {@linkcode runTraining}.
 *
 * Every input error is a one-line `TypeError` / `RangeError` / `SyntaxError` (or
 * `Deno.errors.NotFound` / `PermissionDenied` for paths) before training starts: exit code 2.
 *
 * @module
 */
import type { TrainingConfig } from "../training/config.ts";
import { configFromArgs, shellQuote, withoutFlags } from "./_config_args.ts";
import { runTraining } from "../training/run.ts";
import type { Command } from "./command.ts";

const USAGE = `usage: deno task cli train --config run.yaml [--<field> value ...]

Trains the model named by the config's \`model\` (a preset such as tiny, a folder or a hub id) on
its \`dataset\` (a .jsonl/.json/.csv/.txt/.parquet file, also .gz/.zst/.xz/.bz2, a folder, or a hub
dataset id with dataset_config for its config) and writes output_dir:
config.yaml, metrics.jsonl, checkpoints/step-N/, model/, report.md, curves.svg.

options:
  -c, --config FILE          a TrainingConfig in YAML (.yaml, .yml) or JSON (.json)
  --<field> VALUE            any TrainingConfig field, by its Hugging Face name; the value is read
                             as JSON when it parses (numbers, true/false, null, {...}), else as text
  --block_size N             alias of --max_seq_length (also --max_length)
  -h, --help                 this text

examples:
  --learning_rate 3e-4 --max_steps 200 --block_size 128 --output_dir runs/x
  --resume_from_checkpoint true       resume from the latest checkpoint in output_dir
  --lora '{"r": 16}'

Flags may also be spelled with hyphens (--learning-rate).`;

/**
 * A training command (`train`, `sft`): parse the config and flags, run {@linkcode runTraining} with
 * signal handling, print the summary, or on SIGINT / SIGTERM the command that resumes.
 * @param spec the command's name, summary, usage and config defaults
 * @returns the command
 */
export function trainingCommand(
  spec: { name: string; summary: string; usage: string; defaults?: Partial<TrainingConfig> },
): Command {
  const { name, usage } = spec;
  return {
    summary: spec.summary,
    usage,
    async run(args, io) {
      const config = await configFromArgs(name, args, {
        defaults: spec.defaults,
        example: "run.yaml",
        kind: "sft",
      });
      if (!config) return io.stdout(usage + "\n");
      const r = await runTraining(config, { handle_signals: true });
      if (r.interrupted) {
        // The same command, resuming from the newest checkpoint (whatever it resumed from before).
        // (without overwrite_output_dir, which a resume refuses)
        const again = withoutFlags(args, ["resume_from_checkpoint", "overwrite_output_dir"]);
        again.push("--resume_from_checkpoint", "true");
        if (config.overwrite_output_dir) again.push("--overwrite_output_dir", "false");
        io.stderr(
          `fledge: ${r.interrupted} at step ${r.metrics_summary.global_step}: saved ${r.checkpoint_path}; ` +
            `resume with: deno task cli ${name} ${again.map(shellQuote).join(" ")}\n`,
        );
        return r.interrupted === "SIGINT" ? 130 : 143;
      }
      const ev = r.metrics_summary.eval_loss, to = r.metrics_summary.global_step ?? 0;
      // a resumed run trained the steps after its checkpoint (it said all of them)
      const ran = Math.round((r.metrics_summary.train_steps_per_second ?? 0) * r.training_time);
      io.stdout(
        `trained ${
          config.resume_from_checkpoint && ran < to
            ? ran === 0
              ? `nothing more (the run had finished at step ${to})`
              : `${ran} step${ran === 1 ? "" : "s"} (${to - ran + 1}-${to})`
            : `${to} steps`
        } ` +
          `in ${r.training_time.toFixed(1)}s: ` +
          `loss ${r.final_loss.toFixed(4)}` + (ev === null ? "" : `, eval_loss ${ev.toFixed(4)}`) +
          `, perplexity ${r.final_perplexity.toFixed(2)} -> ${config.output_dir}\n`,
      );
    },
  };
}

/** The `train` command. */
export const command: Command = trainingCommand({
  name: "train",
  summary: "train or fine-tune from a YAML/JSON TrainingConfig (+ --<field> value overrides)",
  usage: USAGE,
});
