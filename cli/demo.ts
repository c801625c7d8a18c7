/**
 * `deno task cli demo` (shortcut `deno task demo`): pre-train the tiny model on the Debian
 * package descriptions, sample from it and write the run folder, through {@linkcode runDemo}.
 *
 * @module
 */
import { parseFlags } from "../util/flags.ts";
import { runDemo } from "../tasks/demo.ts";
import type { CliIO, Command } from "./command.ts";

const USAGE = `usage: deno task cli demo [options]

Pre-trains the tiny model on the Debian package descriptions with the real Trainer, samples
from it and writes the run folder: config.yaml, metrics.jsonl, checkpoints/, model/, curves.svg,
report.md, samples.txt. \`deno task demo\` is short for \`deno task cli demo\`.

options:
  --output_dir DIR                  default runs/demo (or runs/demo-N when taken: never overwritten)
  --overwrite_output_dir            replace the run in a given --output_dir
  --max_steps N                     default 1200
  --per_device_train_batch_size N   default 8
  --block_size N                    tokens per sequence (max_seq_length), default 64
  --learning_rate LR                default 3e-3
  --backend webgpu|cpu|auto         default auto
  -h, --help                        this text

Flags may also be spelled with hyphens (--max-steps).`;

const FLAGS = {
  output_dir: { type: "string" },
  overwrite_output_dir: { type: "boolean" },
  max_steps: { type: "int", min: 1 },
  per_device_train_batch_size: { type: "int", min: 1 },
  block_size: { type: "int", min: 1 },
  learning_rate: { type: "number", min: 0, exclusiveMin: true },
  backend: { type: "string", choices: ["webgpu", "cpu", "auto"] },
} as const;

/** The `demo` command. */
export const command: Command = {
  summary: "pre-train the tiny model on the Debian text, sample from it, write the run folder",
  usage: USAGE,
  run: demoRun,
};

async function demoRun(args: string[], io: CliIO): Promise<number | void> {
  const v = parseFlags("demo", args, FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  const { help: _, ...opts } = v;
  const r = await runDemo({ ...opts, handle_signals: true });
  if (r.interrupted) {
    io.stderr(
      `fledge: ${r.interrupted}: the demo stopped after saving ${r.checkpoint_path}; resume with: ` +
        `deno task cli train --config ${r.output_dir}/config.yaml --resume_from_checkpoint true\n`,
    );
    return r.interrupted === "SIGINT" ? 130 : 143;
  }
}
