/**
 * `deno task cli merge`: fold a PEFT adapter (LoRA or DoRA) into its base model
 * (`merge_and_unload`) and write a plain Hugging Face checkpoint.
 *
 * @module
 */
import { parseFlags } from "../util/flags.ts";
import { createBackend } from "../kernels/backend.ts";
import { loadModel, modelSource } from "../models/pretrained.ts";
import { saveModel } from "../models/save.ts";
import { openSafetensors } from "../models/formats/safetensors.ts";
import { TOKENIZER_FILES } from "../models/hub/hub.ts";
import { join } from "node:path";
import { isFileSync, writeDirAtomic } from "../util/atomic.ts";
import { loadAdapter, mergeAdapter } from "../training/peft.ts";
import { type CliIO, type Command, noteTempLeftovers } from "./command.ts";
import { noteAdapterBase } from "./_model.ts";

const USAGE = `usage: deno task cli merge --model DIR_OR_ID --adapter DIR --output DIR [options]

Loads a base model and a PEFT adapter (LoRA or DoRA), folds the adapter into the weights
(merge_and_unload) and writes a plain Hugging Face checkpoint (config.json, model.safetensors).

options:
  --model DIR_OR_ID          the base model: a folder or a hub id (org/name)
  --adapter DIR              a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)
  --output DIR               where the merged checkpoint goes (a new folder)
  --dtype auto|float32|float16|bfloat16
                             the merged weights' dtype (default auto: the base checkpoint's, as PEFT's
                             merge_and_unload keeps the dtype the base was loaded in)
  --overwrite_output_dir     replace an existing --output folder (atomically: old or new, never a mix)
  --backend webgpu|cpu|auto  default auto
  -h, --help                 this text

The tokenizer files come from the adapter folder when it has a tokenizer.json (TRL saves the
tokenizer it trained with, chat template included, beside the adapter), else from the base model.
A bfloat16 or float16 checkpoint holds the merged weights rounded to that type.`;

const FLAGS = {
  model: { type: "string", required: true },
  adapter: { type: "string", required: true },
  output: { type: "string", required: true },
  overwrite_output_dir: { type: "boolean" },
  dtype: { type: "string", choices: ["auto", "float32", "float16", "bfloat16"], default: "auto" },
  backend: { type: "string", choices: ["webgpu", "cpu", "auto"], default: "auto" },
} as const;

/** The names in `dir` (empty when it does not exist). */
async function contents(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    if (e instanceof Deno.errors.NotADirectory) {
      if ((await Deno.stat(dir).then((s) => s.isFile, () => false))) {
        // a file (a model.safetensors) is never replaced by a folder, asked or not: HF's save_pretrained refuses it too
        throw new TypeError(`merge: --output ${dir} is a file; give a folder (merge writes a model folder)`);
      }
      throw new TypeError(
        `merge: --output ${dir}: a folder above it is a file, not a folder; choose another path`,
      );
    }
    throw e;
  }
}

type SaveDtype = "float32" | "float16" | "bfloat16";

/**
 * The floating dtype of a checkpoint folder's weights: bfloat16 or float16 when every floating
 * tensor is one, else float32 (also for a folder without safetensors).
 */
async function checkpointDtype(dir: string | undefined): Promise<SaveDtype> {
  if (!dir) return "float32";
  let r;
  try {
    r = await openSafetensors(dir);
  } catch {
    return "float32";
  }
  try {
    const kinds = new Set(
      r.names().map((n) => r.info(n).dtype).filter((d) => ["F16", "BF16", "F32", "F64"].includes(d)),
    );
    return kinds.size === 1 && kinds.has("BF16")
      ? "bfloat16"
      : kinds.size === 1 && kinds.has("F16")
      ? "float16"
      : "float32";
  } finally {
    r.close();
  }
}

/** Replace the tokenizer files saveModel copied from the base with the adapter folder's set. */
async function useTokenizerOf(adapter: string, dir: string): Promise<void> {
  for (const f of TOKENIZER_FILES) {
    const from = join(adapter, f), to = join(dir, f);
    if (isFileSync(from)) await Deno.copyFile(from, to);
    else await Deno.remove(to).catch(() => {}); // a base file beside the adapter's set would mix two tokenizers
  }
}

/** The `merge` command. */
export const command: Command = {
  summary: "merge a PEFT LoRA/DoRA adapter into its base model and save a Hugging Face checkpoint",
  usage: USAGE,
  run: mergeRun,
};

async function mergeRun(args: string[], io: CliIO): Promise<void> {
  const v = parseFlags("merge", args, FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  const taken = await contents(v.output);
  if (taken.length && !v.overwrite_output_dir) {
    throw new RangeError(
      `merge: --output ${v.output} already exists (${taken.slice(0, 4).join(", ")}${
        taken.length > 4 ? ", ..." : ""
      }); ` +
        `pass --overwrite_output_dir to replace it, or choose a new folder`,
    );
  }
  await noteTempLeftovers(io, "merge", [v.output]);
  const be = await createBackend(v.backend);
  try {
    const model = await loadModel(v.model, { backend: be });
    try {
      const c = await loadAdapter(model, v.adapter);
      await noteAdapterBase(io, "merge", v.adapter, c, model, v.model);
      mergeAdapter(model);
      const torch_dtype = v.dtype === "auto"
        ? await checkpointDtype(modelSource(model))
        : v.dtype as SaveDtype;
      const ownTokenizer = isFileSync(join(v.adapter, "tokenizer.json"));
      // The whole folder at once: an old tokenizer.json can never sit beside new weights.
      await writeDirAtomic(v.output, async (tmp) => {
        await saveModel(model, tmp, { torch_dtype });
        if (ownTokenizer) await useTokenizerOf(v.adapter, tmp);
      }, { replace: v.overwrite_output_dir === true }); // not over a folder that filled meanwhile, unasked
      io.stderr(
        `merge: merged ${c.use_dora ? "DoRA" : "LoRA"} r=${c.r} (${
          [c.target_modules].flat().join(", ")
        }) into ${v.output} (${torch_dtype}; the tokenizer of ${
          ownTokenizer ? v.adapter : "the base model"
        })\n`,
      );
    } finally {
      model.dispose();
    }
  } finally {
    be.destroy();
  }
}
