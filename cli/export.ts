/**
 * `deno task cli export`: write a model folder, hub id or fine-tuned run folder as a file another
 * runtime serves: GGUF for llama.cpp / Ollama (the model, merged with its adapter or with the
 * adapter as a second GGUF file), or ONNX for onnxruntime.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { parseFlags } from "../util/flags.ts";
import { formatBytes } from "../util/format.ts";
import { moveFileAtomic, refuseFolder, tempPath } from "../util/atomic.ts";
import { createBackend } from "../kernels/backend.ts";
import { exportGguf, exportGgufAdapter, type GgufOuttype } from "../models/formats/gguf.ts";
import { exportOnnx } from "../models/formats/onnx.ts";
import { loadModel, modelSource } from "../models/pretrained.ts";
import { loadTokenizer, type Tokenizer } from "../models/tokenizer/tokenizer.ts";
import type { Transformer } from "../models/transformer.ts";
import {
  adapterConfig,
  adapterTensors,
  loadAdapter,
  mergeAdapter,
  readAdapter,
  removeAdapter,
} from "../training/peft.ts";
import { fromHfConfig } from "../models/config.ts";
import { hubDownload } from "../models/hub/hub.ts";
import { readJsonFile } from "../util/json.ts";
import { type CliIO, type Command, noteTempLeftovers } from "./command.ts";
import { noteAdapterBase } from "./_model.ts";

const USAGE = `usage: deno task cli export --model DIR_OR_ID --output FILE [options]

Writes a model as one file another runtime serves: GGUF (llama.cpp, Ollama) or ONNX (onnxruntime).
--model may be a model folder (config.json + model.safetensors), a hub id, or a training run
folder: its model/ is exported, or, for an adapter run, the base model named in
adapter/adapter_config.json with adapter/ on top.

options:
  --model DIR_OR_ID          a model folder, a hub id (org/name) or a run folder
  --output FILE              the file to write (.gguf or .onnx; ONNX also writes config.json,
                             generation_config.json and the tokenizer files beside it, so give each
                             ONNX export a folder of its own)
  --format gguf|onnx         default: the --output extension (.onnx), else gguf
  --outtype f32|f16|q8_0|q4_0
                             GGUF weight type (default f16; norms and biases stay f32)
  --adapter DIR              a PEFT LoRA adapter folder (default: the run folder's adapter/)
  --merge                    fold the adapter into the weights and write one file; without it the
                             base model goes to --output and the adapter to --adapter_output
  --adapter_output FILE      the adapter's GGUF (default: --output with .gguf replaced by -lora.gguf)
  --adapter_only             write only the adapter's GGUF, to --output (llama.cpp's
                             convert_lora_to_gguf.py), for a base model already exported
  --adapter_outtype f32|f16|q8_0
                             the adapter GGUF's weight type (default f32; --outtype is the base's)
  --tokenizer DIR            a folder with tokenizer.json (default: the adapter's, as TRL saves the
                             tokenizer it trained with beside it, else the model's, else the run folder)
  --name NAME                GGUF general.name (default: the hub id's or folder's name, as
                             convert_hf_to_gguf.py; a run folder's name for its model/); the
                             adapter's is NAME-lora, or NAME itself with --adapter_only
  --overwrite                replace existing output files
  --backend webgpu|cpu|auto  where the model is loaded and merged (default cpu)
  --json                     print {"path", "bytes", "tensors"} (and "adapter": {...} for a second file)
  -h, --help                 this text

Flags may also be spelled with hyphens (--adapter-output). A summary line goes to stderr.`;

const FLAGS = {
  model: { type: "string", required: true },
  output: { type: "string", required: true },
  format: { type: "string", choices: ["gguf", "onnx"] },
  outtype: { type: "string", choices: ["f32", "f16", "q8_0", "q4_0"] },
  adapter_outtype: { type: "string", choices: ["f32", "f16", "q8_0"] },
  adapter: { type: "string" },
  merge: { type: "boolean" },
  adapter_only: { type: "boolean" },
  adapter_output: { type: "string" },
  tokenizer: { type: "string" },
  name: { type: "string" },
  overwrite: { type: "boolean" },
  backend: { type: "string", choices: ["webgpu", "cpu", "auto"] },
  json: { type: "boolean" },
} as const;

/** The `export` command. */
export const command: Command = {
  summary: "export a model or fine-tuned run as GGUF (llama.cpp, Ollama) or ONNX (onnxruntime)",
  usage: USAGE,
  run: exportRun,
};

/** What a run folder or model folder resolves to: the model to load and the adapter on top, if any. */
interface Source {
  model: string;
  adapter: string | null;
  /** Folders that may hold the tokenizer, in order. */
  tokenizerDirs: string[];
}

/** A model folder, a hub id, or a run folder (`model/`, or `adapter/` on its base model). */
function resolveSource(dir: string, adapterFlag: string | undefined): Source {
  const has = (...p: string[]) => existsSync(join(...p));
  if (has(dir, "config.json") || !has(dir)) {
    return {
      model: dir,
      adapter: adapterFlag ?? null,
      tokenizerDirs: [dir, ...(adapterFlag ? [adapterFlag] : [])],
    };
  }
  if (has(dir, "model", "config.json")) {
    const m = join(dir, "model");
    return {
      model: m,
      adapter: adapterFlag ?? null,
      tokenizerDirs: [m, dir, ...(adapterFlag ? [adapterFlag] : [])],
    };
  }
  const adapter = adapterFlag ?? (has(dir, "adapter", "adapter_config.json") ? join(dir, "adapter") : null);
  if (!adapter) {
    throw new TypeError(
      `export: --model ${dir} has no config.json, model/ or adapter/; give a model folder, a hub id or a training run folder`,
    );
  }
  const cfgPath = join(adapter, "adapter_config.json");
  let base: unknown = null;
  try {
    base = JSON.parse(Deno.readTextFileSync(cfgPath)).base_model_name_or_path;
  } catch (e) {
    throw new TypeError(`export: cannot read ${cfgPath}: ${(e as Error).message}`);
  }
  if (typeof base !== "string" || !base) {
    throw new TypeError(
      `export: ${cfgPath} does not name its base model (base_model_name_or_path); pass --model BASE --adapter ${adapter}`,
    );
  }
  return { model: base, adapter, tokenizerDirs: [adapter, dir] };
}

/**
 * Refuse an output that is one of the export's own input files (`--output MODEL/model.safetensors
 * --overwrite` replaced the weights it read with GGUF bytes).
 */
const READ_FILES =
  /(\.safetensors|\.safetensors\.index\.json|^config\.json|^generation_config\.json|^tokenizer.*|^special_tokens_map\.json|^chat_template\..*)$/;

async function refuseInputFile(out: string, inputs: (string | null)[]): Promise<void> {
  const real = await Deno.realPath(out).catch(() => null);
  if (!real) return;
  for (const dir of inputs) {
    const inDir = dir && await Deno.realPath(dir).catch(() => null);
    if (inDir && dirname(real) === inDir && READ_FILES.test(basename(real))) {
      throw new TypeError(
        `export: --output ${out} is a file of ${dir}, which this export reads; write the export elsewhere`,
      );
    }
  }
}

/** The first folder with a tokenizer.json, loaded; null when there is none. */
async function findTokenizer(dirs: (string | undefined)[]): Promise<Tokenizer | null> {
  for (const d of dirs) if (d && existsSync(join(d, "tokenizer.json"))) return await loadTokenizer(d);
  return null;
}

/**
 * GGUF `general.name` when --name is not given, as convert_hf_to_gguf.py names a model by where it
 * came from: a hub id's name, a folder's name (a run folder's, for its model/ or adapter/).
 * Undefined (the exporter's fledge-<family>) for a name llama.cpp would read as Phi-3 without the
 * tokenizer's <|end|>, or one that is not plain text.
 */
function defaultName(model: string, tokenizer: Tokenizer | null): string | undefined {
  const trimmed = model.replace(/[\\/]+$/, "");
  let name = basename(trimmed);
  const run = dirname(trimmed); // a training run's model/ or adapter/ goes by the run's name
  if (["model", "adapter"].includes(name) && existsSync(join(run, "config.yaml"))) {
    name = basename(resolve(run));
  }
  if (!name || name === "." || name === "..") return undefined;
  if (/phi-?3/i.test(name) && tokenizer?.tokenToId("<|end|>") === null) return undefined;
  return name;
}

interface Written {
  path: string;
  bytes: number;
  tensors: number;
}

/**
 * `--adapter_only`: the adapter's GGUF from its own files and the base's config.json alone, as
 * `convert_lora_to_gguf.py` needs no base weights (loading a 7B base in f32 took 28 GB to write an
 * adapter of a few megabytes).
 */
async function exportAdapterOnly(
  io: CliIO,
  v: {
    output: string;
    name?: string;
    adapter_outtype?: string;
    overwrite?: boolean;
    json?: boolean;
    model: string;
  },
  base: string,
  adapterDir: string,
): Promise<void> {
  const file = existsSync(base)
    ? join(base, "config.json")
    : await hubDownload({ repo_id: base, filename: "config.json" });
  const config = fromHfConfig(await readJsonFile(file), { file });
  const a = await readAdapter(adapterDir, config);
  if (a.config.use_dora) {
    throw new TypeError(
      `export: the adapter ${adapterDir} is DoRA, which llama.cpp adapters cannot hold; export the model ` +
        `with it merged instead (--merge, without --adapter_only)`,
    );
  }
  const outtype = (v.adapter_outtype ?? "f32") as "f32" | "f16" | "q8_0";
  const stem = defaultName(v.model, null); // --name as given; else the pair export's adapter name
  const name = v.name ?? (stem && `${stem}-lora`);
  const r = await exportGgufAdapter({ config }, v.output, {
    adapter: { ...a.config, tensors: a.tensors },
    outtype,
    overwrite: v.overwrite,
    ...(name ? { name } : {}),
  });
  io.stderr(
    `export: wrote ${r.path} (gguf LoRA adapter ${outtype}, ${r.tensors} tensors, ${formatBytes(r.bytes)})\n`,
  );
  if (v.json) io.stdout(JSON.stringify({ path: r.path, bytes: r.bytes, tensors: r.tensors }) + "\n");
}

async function exportRun(args: string[], io: CliIO): Promise<void> {
  const v = parseFlags("export", args, FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  if (v.adapter_output && v.merge) {
    throw new TypeError("export: --adapter_output and --merge exclude each other");
  }
  // The format follows --output's extension unless --format says it; the two must agree.
  const ext = /\.(gguf|onnx)$/i.exec(v.output)?.[1].toLowerCase();
  if (v.format && ext && ext !== v.format) {
    throw new TypeError(
      `export: --output ${v.output} ends in .${ext} but --format is ${v.format}; make them agree`,
    );
  }
  const format = v.format ?? ext ?? "gguf";
  const src = resolveSource(v.model, v.adapter);
  // Flags this export would not read are refused, not ignored.
  const unread = [
    ...(src.adapter ? [] : [["adapter_output", "needs an adapter (--adapter DIR)"], [
      "merge",
      `needs an adapter to merge (--adapter DIR; ${v.model} has none)`,
    ], ["adapter_only", `needs an adapter (--adapter DIR; ${v.model} has none)`]]),
    ...(v.adapter_only && src.adapter
      ? [
        ["merge", "writes the model, and --adapter_only the adapter alone; choose one"],
        ["adapter_output", "is the adapter's file beside the model's; with --adapter_only it is --output"],
        ["outtype", "is the model's weight type; the adapter's is --adapter_outtype"],
        ["tokenizer", "is the model's vocabulary, and an adapter GGUF holds none"],
        ["backend", "has no model to load: an adapter GGUF is written from the adapter's files"],
      ]
      : []),
    ...(src.adapter && !v.merge
      ? []
      : [["adapter_outtype", "is for an adapter written as its own GGUF (no --merge)"]]),
    ...(format === "onnx"
      ? [["outtype", "is for GGUF (ONNX keeps f32)"], ["name", "is GGUF's general.name"]]
      : []),
  ].filter(([k]) => v[k as keyof typeof v] !== undefined && v[k as keyof typeof v] !== false);
  if (unread.length) {
    throw new TypeError(`export: ${unread.map(([k, why]) => `--${k} ${why}`).join("; ")}`);
  }
  if (format === "onnx" && v.adapter_only) {
    throw new TypeError("export: --adapter_only writes a GGUF adapter (llama.cpp); ONNX has none: drop it");
  }
  if (format === "onnx" && src.adapter && !v.merge) {
    throw new TypeError(
      `export: ONNX holds one graph, so the adapter ${src.adapter} must be merged into it: add --merge`,
    );
  }
  const adapterOut = src.adapter && !v.merge && !v.adapter_only
    ? v.adapter_output ?? v.output.replace(/(\.gguf)?$/i, "-lora.gguf")
    : null;
  if (adapterOut && resolve(adapterOut) === resolve(v.output)) {
    throw new TypeError(
      `export: --adapter_output ${adapterOut} is --output too (the adapter would replace the model); give another path`,
    );
  }
  for (const p of [v.output, adapterOut]) {
    if (p) await refuseFolder(p); // before the model loads
    if (p) await refuseInputFile(p, [src.model, src.adapter]);
    if (p && !v.overwrite && existsSync(p)) {
      throw new RangeError(
        `export: ${p} already exists; pass --overwrite to replace it, or choose another path`,
      );
    }
  }
  await noteTempLeftovers(io, "export", [
    v.output,
    adapterOut,
    format === "onnx" ? `${v.output}.data` : null,
  ]);
  if (v.adapter_only) return await exportAdapterOnly(io, v, src.model, src.adapter!);
  const be = await createBackend(v.backend ?? "cpu");
  let model: Transformer | null = null;
  try {
    model = await loadModel(src.model, { backend: be });
    // an adapter folder's own tokenizer first: TRL saves the one it trained with (chat template
    // included) beside the adapter, and the base's would drop it without a word
    const tokenizer = v.tokenizer
      ? await loadTokenizer(v.tokenizer)
      : await findTokenizer([src.adapter ?? undefined, modelSource(model), ...src.tokenizerDirs]);
    if (format === "gguf" && !tokenizer) {
      throw new TypeError(
        `export: no tokenizer.json in ${
          [...new Set([modelSource(model), ...src.tokenizerDirs])].join(", ")
        }; ` +
          `GGUF needs the vocabulary: pass --tokenizer DIR`,
      );
    }
    let main: Written, extra: Written | null = null;
    if (src.adapter) {
      await noteAdapterBase(
        io,
        "export",
        src.adapter,
        await loadAdapter(model, src.adapter),
        model,
        src.model,
      );
    }
    if (format === "onnx") {
      if (src.adapter) mergeAdapter(model);
      const r = await exportOnnx(model, v.output, {
        ...(tokenizer ? { tokenizer } : {}),
        overwrite: v.overwrite,
      });
      main = { path: r.path, bytes: r.bytes, tensors: model.params.size };
    } else {
      const opts = {
        tokenizer: tokenizer!,
        outtype: (v.outtype ?? "f16") as GgufOuttype,
        overwrite: v.overwrite,
      };
      const named = <T extends object>(o: T, name?: string) => (name !== undefined ? { ...o, name } : o);
      const name = v.name ?? defaultName(v.model, tokenizer);
      // The adapter is merged, or written first as its own GGUF (which refuses what llama.cpp
      // adapters cannot hold, e.g. trained biases, before anything is written) and detached. It is
      // written under a temp name and put in place only once the model's GGUF is written too, so a
      // failed export leaves neither file (a left adapter would block the rerun).
      if (src.adapter && v.merge) mergeAdapter(model);
      const pending = adapterOut ? tempPath(adapterOut) : null;
      try {
        if (adapterOut && pending) { // adapterOut: an adapter not merged
          const adapter = { ...adapterConfig(model)!, tensors: await adapterTensors(model) };
          extra = await exportGgufAdapter(
            model,
            pending,
            named(
              { adapter, outtype: (v.adapter_outtype ?? "f32") as "f32" | "f16" | "q8_0" },
              name && `${name}-lora`,
            ),
          ).catch((e) => { // its refusals name the file the user asked for, not the temp name
            if (e instanceof Error) e.message = e.message.replaceAll(pending, adapterOut);
            throw e;
          });
          removeAdapter(model);
        }
        main = await exportGguf(model, v.output, named(opts, name));
        if (extra && adapterOut && pending) {
          // not over a file that appeared meanwhile (without --overwrite); the pair is one output,
          // so the model's GGUF this run just wrote goes too, and a rerun is not refused over it
          await moveFileAtomic(pending, adapterOut, { replace: v.overwrite }).catch(async (e) => {
            if (!v.overwrite) await Deno.remove(main.path).catch(() => {});
            throw e;
          });
          extra = { ...extra, path: adapterOut };
        }
      } finally {
        if (pending) await Deno.remove(pending).catch(() => {});
      }
    }
    const what = format === "onnx" ? "onnx" : `gguf ${v.outtype ?? "f16"}`;
    const adapterNote = src.adapter && v.merge ? `, its adapter (${src.adapter}) merged` : "";
    io.stderr(
      `export: wrote ${main.path} (${what}, ${main.tensors} tensors, ${
        formatBytes(main.bytes)
      }${adapterNote})\n`,
    );
    if (extra) {
      io.stderr(
        `export: wrote ${extra.path} (gguf LoRA adapter, ${extra.tensors} tensors, ${
          formatBytes(extra.bytes)
        })\n`,
      );
    }
    if (v.json) {
      const json: Written & { adapter?: Written } = {
        path: main.path,
        bytes: main.bytes,
        tensors: main.tensors,
      };
      if (extra) json.adapter = { path: extra.path, bytes: extra.bytes, tensors: extra.tensors };
      io.stdout(JSON.stringify(json) + "\n");
    }
  } finally {
    model?.dispose();
    be.destroy();
  }
}
