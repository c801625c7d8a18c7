/**
 * `deno task cli dpo`: preference tuning (TRL `trl dpo`) from a YAML/JSON {@linkcode TrainingConfig}
 * with the DPO fields (`beta`, `loss_type`, `label_smoothing`, `max_prompt_length`,
 * `precompute_ref_log_probs`, `disable_dropout`) plus `--<field> value` overrides, through
 * {@linkcode runDpo}. Unset fields take TRL `DPOConfig`'s defaults where they differ from
 * `TrainingArguments` (`learning_rate` 1e-6, `logging_steps` 10, `gradient_checkpointing` true).
 *
 * Every input error is a one-line `TypeError` / `RangeError` / `SyntaxError` (or
 * `Deno.errors.NotFound` / `PermissionDenied` for paths) before training starts: exit code 2.
 *
 * @module
 */
import { configFromArgs, shellQuote } from "./_config_args.ts";
import { DPO_CONFIG_DEFAULTS, runDpo } from "../training/dpo.ts";
import type { Command } from "./command.ts";

const USAGE = `usage: deno task cli dpo --config dpo.yaml [--<field> value ...]

Direct Preference Optimization (TRL's DPOTrainer) of the config's \`model\` (a folder or hub id of a
trained model) on its \`dataset\`: rows {prompt, chosen, rejected} (text or message lists) in a
.jsonl/.json/.csv/.parquet file (also .gz/.zst/.xz/.bz2), a folder with train (and validation)
splits, or a hub dataset id (org/name; dataset_config picks its config). With a lora section
the reference model is the same model with the adapter switched off; without one (full fine-tuning)
a frozen copy of the weights (TRL's create_reference_model), or with precompute_ref_log_probs: true
log-probs computed once before training. Writes output_dir: config.yaml, metrics.jsonl (loss,
rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins, logps/*, logits/*),
checkpoints/step-N/, adapter/ or model/, report.md, curves.svg.

options:
  -c, --config FILE          a TrainingConfig in YAML (.yaml, .yml) or JSON (.json)
  --<field> VALUE            any TrainingConfig field, by its Hugging Face / TRL name; the value is
                             read as JSON when it parses (numbers, true/false, null, {...}), else text
  --beta B                   deviation from the reference (default 0.1)
  --loss_type T              sigmoid (default), hinge or ipo
  --max_length N             tokens per sequence (alias of --max_seq_length; default 1024)
  --max_prompt_length N      keep the last N prompt tokens (default 512)
  -h, --help                 this text

examples:
  --config dpo.yaml --beta 0.05 --loss_type ipo --output_dir runs/dpo
  --lora '{"r": 16, "lora_alpha": 32}' --learning_rate 5e-6
  --lora null --precompute_ref_log_probs true   full fine-tuning, no copy of the weights
  --resume_from_checkpoint true       resume from the latest checkpoint in output_dir

Flags may also be spelled with hyphens (--max-prompt-length).`;

const fixed = (x: number | null | undefined, d = 4) => (typeof x === "number" ? x.toFixed(d) : "n/a");

/** The `dpo` command. */
export const command: Command = {
  summary: "preference-tune a model with DPO (TRL names: beta, loss_type, ...) from a YAML/JSON config",
  usage: USAGE,
  async run(args, io) {
    const config = await configFromArgs("dpo", args, {
      defaults: DPO_CONFIG_DEFAULTS,
      example: "dpo.yaml",
      kind: "dpo",
    });
    if (!config) return io.stdout(USAGE + "\n");
    const r = await runDpo(config, { handle_signals: true });
    if (r.interrupted) {
      const again: string[] = [];
      for (let i = 0; i < args.length; i++) {
        if (/^--resume[-_]from[-_]checkpoint$/.test(args[i])) i++;
        else if (!/^--resume[-_]from[-_]checkpoint=/.test(args[i])) again.push(args[i]);
      }
      again.push("--resume_from_checkpoint", "true");
      io.stderr(
        `fledge: ${r.interrupted} at step ${r.metrics_summary.global_step}: saved ${r.checkpoint_path}; ` +
          `resume with: deno task cli dpo ${again.map(shellQuote).join(" ")}\n`,
      );
      return r.interrupted === "SIGINT" ? 130 : 143;
    }
    const m = r.metrics_summary, acc = m["eval_rewards/accuracies"] ?? m["rewards/accuracies"];
    io.stdout(
      `trained ${m.global_step} DPO steps in ${r.training_time.toFixed(1)}s: loss ${fixed(r.final_loss)}` +
        (m.eval_loss === null ? "" : `, eval_loss ${fixed(m.eval_loss)}`) +
        (typeof acc === "number"
          ? `, ${m["eval_rewards/accuracies"] === undefined ? "" : "eval "}rewards/accuracies ${
            fixed(acc, 3)
          }`
          : "") +
        ` -> ${config.output_dir}\n`,
    );
  },
};
