/**
 * The fledge command line: `deno task cli <command> [options]`.
 *
 * Thin by design: each command parses its flags, calls the library and prints. Bad input exits
 * with code 2 and a one-line message naming the flag or file and the fix.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createBackend } from "./kernels/backend.ts";
import { runDemo } from "./tasks/demo.ts";
import { GENERATE_USAGE, generateCli } from "./cli/generate.ts";
import { mergeCli } from "./training/peft.ts";
import { TRAIN_USAGE, trainCli } from "./cli/train.ts";
import { DOWNLOAD_USAGE, downloadCli } from "./cli/download.ts";
import { HubError } from "./models/hub/hub.ts";

/** A CLI usage error: printed as one line, exit code 2. */
export class UsageError extends Error {
  /** @param message what is wrong and the fix */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

interface Command {
  summary: string;
  usage: string;
  run(args: string[]): Promise<void>;
}

function parse<T extends Record<string, { type: "string" | "boolean"; short?: string }>>(
  cmd: string,
  args: string[],
  options: T,
) {
  try {
    return parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: false,
    })
      .values;
  } catch (e) {
    const msg = (e as Error).message.replace(/\s*\n\s*/g, " ");
    throw new UsageError(`${cmd}: ${msg} (see \`deno task cli ${cmd} --help\`)`);
  }
}

const COMMANDS: Record<string, Command> = {
  train: {
    summary: "train or fine-tune from a YAML/JSON TrainingConfig (+ --<field> value overrides)",
    usage: TRAIN_USAGE,
    run: (args) => trainCli(args),
  },
  download: {
    summary: "fetch a model's config, tokenizer and safetensors files (hub cache layout, resume, --verify)",
    usage: DOWNLOAD_USAGE,
    run: (args) => downloadCli(args),
  },
  merge: {
    summary: "merge a PEFT LoRA/DoRA adapter into its base model and save a Hugging Face checkpoint",
    usage: "deno task cli merge --model <dir|id> --adapter <dir> --output <dir> [--backend auto|webgpu|cpu]",
    run: (args) => mergeCli(args),
  },
  generate: {
    summary: "generate text or token ids with a model folder or hub id (KV cache, HF sampling options)",
    usage: GENERATE_USAGE,
    run: (args) => generateCli(args),
  },
  demo: {
    summary: "pre-train the tiny model on the bundled Debian text, sample from it, write the run folder",
    usage:
      "deno task demo [--output_dir runs/demo] [--max_steps 200] [--per_device_train_batch_size 8] [--block_size 64] [--learning_rate 3e-3] [--backend auto|webgpu|cpu]",
    async run(args) {
      const v = parse("demo", args, {
        output_dir: { type: "string" },
        max_steps: { type: "string" },
        per_device_train_batch_size: { type: "string" },
        block_size: { type: "string" },
        learning_rate: { type: "string" },
        backend: { type: "string" },
      });
      if (v.help) return help("demo");
      const num = (flag: string, s: string | undefined, int: boolean) => {
        if (s === undefined) return undefined;
        const n = Number(s);
        if (!Number.isFinite(n) || n <= 0 || (int && !Number.isInteger(n))) {
          throw new UsageError(`demo: --${flag} ${s} is not a positive ${int ? "integer" : "number"}`);
        }
        return n;
      };
      if (v.backend && !["webgpu", "cpu", "auto"].includes(v.backend as string)) {
        throw new UsageError(`demo: --backend ${v.backend} is not one of webgpu, cpu, auto`);
      }
      await runDemo({
        output_dir: v.output_dir as string | undefined,
        max_steps: num("max_steps", v.max_steps as string | undefined, true),
        per_device_train_batch_size: num(
          "per_device_train_batch_size",
          v.per_device_train_batch_size as string | undefined,
          true,
        ),
        block_size: num("block_size", v.block_size as string | undefined, true),
        learning_rate: num("learning_rate", v.learning_rate as string | undefined, false),
        backend: v.backend as "webgpu" | "cpu" | "auto" | undefined,
      });
    },
  },
  info: {
    summary: "show the WebGPU adapter, its features and the limits fledge requested",
    usage: "deno task cli info [--json] [--backend webgpu|cpu|auto]",
    async run(args) {
      const v = parse("info", args, { json: { type: "boolean" }, backend: { type: "string" } });
      if (v.help) return help("info");
      const name = (v.backend ?? "auto") as string;
      if (!["webgpu", "cpu", "auto"].includes(name)) {
        throw new UsageError(`info: --backend ${name} is not one of webgpu, cpu, auto`);
      }
      const be = await createBackend(name as "webgpu" | "cpu" | "auto");
      const info = { backend: be.name, adapter: be.adapter, ...(be.info ?? {}) };
      if (v.json) console.log(JSON.stringify(info));
      else {
        console.log(`backend  ${info.backend}`);
        console.log(`adapter  ${info.adapter}`);
        if (be.info) {
          console.log(`vendor   ${be.info.vendor || "-"}  architecture ${be.info.architecture || "-"}`);
          console.log(
            `features ${be.info.features.join(", ") || "(none of shader-f16, subgroups, timestamp-query)"}`,
          );
          for (const [k, val] of Object.entries(be.info.limits)) console.log(`  ${k.padEnd(36)} ${val}`);
        }
      }
      be.destroy();
    },
  },
};

function help(cmd?: string): void {
  if (cmd && COMMANDS[cmd]) {
    console.log(`${COMMANDS[cmd].summary}\n\nusage: ${COMMANDS[cmd].usage}`);
    return;
  }
  console.log(
    "fledge: train and fine-tune transformer language models on WebGPU\n\nusage: deno task cli <command> [options]\n",
  );
  for (const [name, c] of Object.entries(COMMANDS)) console.log(`  ${name.padEnd(10)} ${c.summary}`);
  console.log("\nRun `deno task cli <command> --help` for a command's options.");
}

/** Run the CLI with `args`; returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  const [cmd, ...rest] = args;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    help(rest[0]);
    return 0;
  }
  const c = COMMANDS[cmd];
  try {
    if (!c) {
      throw new UsageError(`unknown command "${cmd}": expected one of ${Object.keys(COMMANDS).join(", ")}`);
    }
    await c.run(rest);
    return 0;
  } catch (e) {
    if (
      e instanceof UsageError || e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError
    ) {
      console.error(`fledge: ${(e as Error).message}`);
      return 2;
    }
    if (e instanceof HubError) {
      console.error(`fledge: ${e.message}`);
      return 1;
    }
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied) {
      console.error(`fledge: ${(e as Error).message}`);
      return 2;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
