/**
 * `deno task cli generate`: load a model folder or hub id, generate from a text prompt (with the
 * folder's tokenizer) or from token ids, and stream the continuation to stdout or print it as JSON.
 * `--backend onnx` runs onnxruntime instead: a model folder is exported to a temporary `.onnx`
 * file first; a `.onnx` file is run with the `config.json` (and tokenizer) of its folder.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseFlags } from "../util/flags.ts";
import { createBackend } from "../kernels/backend.ts";
import { generate, type GenerateOptions, type GenerateResult } from "../models/generate.ts";
import { loadGenerationConfig } from "../models/generation_config.ts";
import { loadModel } from "../models/pretrained.ts";
import type { ModelConfig } from "../models/config.ts";
import { exportOnnx } from "../models/formats/onnx.ts";
import { generateOnnx, OnnxDecoder } from "../models/onnx_runtime.ts";
import { loadTokenizer } from "../models/tokenizer/tokenizer.ts";
import type { CliIO, Command } from "./command.ts";
import {
  checkFolderTemperature,
  checkSeedSamples,
  createStreamer,
  modelFolder,
  SAMPLER_FLAGS,
  samplerOptions,
} from "./_model.ts";

const USAGE = `usage: deno task cli generate --model DIR_OR_ID (--prompt TEXT | --input_ids 1,2,3) [options]

Generates a continuation with a model folder (config.json + model.safetensors) or a hub id, and
streams it to stdout (text with a tokenizer in the folder, else token ids) or prints it as JSON.

options:
  --model DIR_OR_ID          a folder with config.json + model.safetensors, or a hub id (org/name);
                             with --backend onnx also a .onnx file with config.json beside it
  --prompt TEXT              text prompt (needs tokenizer.json in the model folder)
  --input_ids 1,2,3          prompt token ids
  --max_new_tokens N         new tokens (default: generation_config.json, else 20 as HF's default)
  --greedy                   argmax decoding (do_sample false)
  --do_sample                sample (implied by --temperature, --top_k, --top_p without --greedy)
  --temperature T            > 0
  --top_k K                  keep the K most likely tokens (0 = off)
  --top_p P                  nucleus sampling, in [0, 1]
  --repetition_penalty R     > 0 (1 = off)
  --num_beams K              beam search with K beams (HF's algorithm; printed when done, not streamed)
  --length_penalty L         beam score = sum of log-probs / length ** L (default 1)
  --num_return_sequences N   the N best beams, best first, one per line (needs --num_beams >= N)
  --no_repeat_ngram_size N   never repeat an n-gram of this size (0 = off)
  --seed S                   sampler seed (same seed, same tokens)
  --stop TEXT                stop string (repeatable; needs the tokenizer)
  --backend webgpu|cpu|auto|onnx
                             default auto; onnx runs onnxruntime (CPU) on an ONNX export of the
                             model (made on the fly for a folder; no beam search)
  --json                     print {"tokens":[...]} (new tokens only; plus "text" with a tokenizer;
                             a line per sequence, with its "sequence_score", for several)
  -h, --help                 this text

Flags may also be spelled with hyphens (--max-new-tokens). A summary line (tokens, time, finish
reason) goes to stderr.`;

const FLAGS = {
  model: { type: "string", required: true },
  prompt: { type: "string" },
  input_ids: { type: "string" },
  max_new_tokens: { type: "int", min: 1 },
  ...SAMPLER_FLAGS,
  num_beams: { type: "int", min: 1 },
  length_penalty: { type: "number" },
  num_return_sequences: { type: "int", min: 1 },
  no_repeat_ngram_size: { type: "int", min: 0 },
  stop: { type: "list" },
  backend: { type: "string", choices: ["webgpu", "cpu", "auto", "onnx"], default: "auto" },
  json: { type: "boolean" },
} as const;

/** The `generate` command. */
export const command: Command = {
  summary: "generate text or token ids with a model folder or hub id (KV cache, HF sampling options)",
  usage: USAGE,
  run: generateRun,
};

async function generateRun(args: string[], io: CliIO): Promise<void> {
  const v = parseFlags("generate", args, FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  if ((v.prompt === undefined) === (v.input_ids === undefined)) {
    throw new TypeError("generate: give exactly one of --prompt TEXT or --input_ids 1,2,3");
  }
  const gen: GenerateOptions = {
    max_new_tokens: v.max_new_tokens,
    ...samplerOptions("generate", v),
    num_beams: v.num_beams,
    length_penalty: v.length_penalty,
    num_return_sequences: v.num_return_sequences,
    no_repeat_ngram_size: v.no_repeat_ngram_size,
    stop_strings: v.stop,
  };
  const inputIds = v.input_ids === undefined ? null : parseIds(v.input_ids);

  const onnxFile = /\.onnx$/i.test(v.model) ? v.model : null;
  if (onnxFile && v.backend !== "onnx") {
    throw new TypeError(`generate: --model ${onnxFile} is an ONNX file; run it with --backend onnx`);
  }
  const dir = onnxFile ? onnxFolder(onnxFile) : await modelFolder(v.model, "generate");
  const hasTokenizer = existsSync(join(dir, "tokenizer.json"));
  if (v.prompt !== undefined && !hasTokenizer) {
    throw new TypeError(
      `generate: --prompt needs a tokenizer, but ${dir} has no tokenizer.json; pass --input_ids 1,2,3 instead`,
    );
  }
  if (v.stop && !hasTokenizer) {
    throw new TypeError(`generate: --stop needs a tokenizer, but ${dir} has no tokenizer.json`);
  }
  const tokenizer = hasTokenizer ? await loadTokenizer(dir) : undefined;
  const prompt = inputIds ?? tokenizer!.encode(v.prompt!);
  gen.generation_config = await loadGenerationConfig(dir);
  gen.tokenizer = tokenizer;
  checkSeedSamples("generate", v.seed, gen.do_sample, gen.generation_config, dir);
  checkFolderTemperature("generate", gen.do_sample, gen.temperature, gen.generation_config, dir);
  // Beam search picks its best hypothesis at the end: nothing to stream (HF refuses it too).
  const beams = (gen.num_beams ?? gen.generation_config.num_beams ?? 1) > 1;
  if (!beams && v.length_penalty !== undefined) {
    throw new RangeError(
      "generate: --length_penalty scores beam hypotheses, and this is not beam search; add --num_beams K (K > 1) or drop it",
    );
  }
  if (beams && v.backend === "onnx") {
    throw new RangeError(
      "generate: beam search (num_beams > 1) needs --backend cpu, webgpu or auto, not onnx",
    );
  }
  const stream = v.json || beams ? null : createStreamer(io.stdout, tokenizer, v.stop ?? []);
  const report = async (device: string, fn: () => Promise<GenerateResult>) => {
    const t0 = performance.now();
    const r = await fn();
    const secs = (performance.now() - t0) / 1000;
    // one line per returned sequence (num_return_sequences beams, best first), the JSON with its score
    r.tokens.forEach((tokens, i) => {
      if (v.json) {
        const json: { tokens: number[]; text?: string; sequence_score?: number } = { tokens };
        if (r.text) json.text = r.text[i];
        if (r.tokens.length > 1 && r.sequences_scores) json.sequence_score = r.sequences_scores[i];
        io.stdout(JSON.stringify(json) + "\n");
      } else if (stream) stream.end(r.text?.[0]);
      else io.stdout((r.text?.[i] ?? tokens.join(" ")) + "\n");
    });
    const n = r.tokens[0].length;
    io.stderr(
      `generate: ${n} tokens in ${secs.toFixed(2)} s (${(n / secs).toFixed(1)} tokens/s) on ${device}, ` +
        `finish_reason ${r.finish_reason[0]}\n`,
    );
  };
  if (v.backend === "onnx") {
    const decoder = await onnxDecoder(dir, onnxFile);
    try {
      return await report(
        "onnxruntime (cpu)",
        () => generateOnnx(decoder, [prompt], { ...gen, onToken: stream?.onToken }),
      );
    } finally {
      await decoder.release();
    }
  }
  const be = await createBackend(v.backend as "webgpu" | "cpu" | "auto");
  try {
    const model = await loadModel(dir, { backend: be });
    try {
      await report(be.name, () => generate(model, [prompt], { ...gen, onToken: stream?.onToken }));
    } finally {
      model.dispose();
    }
  } finally {
    be.destroy();
  }
}

/** The folder of a `.onnx` file, which must hold the model's config.json (Optimum's export layout). */
function onnxFolder(file: string): string {
  if (!existsSync(file)) throw new Deno.errors.NotFound(`generate: --model ${file}: no such file`);
  const dir = dirname(file);
  if (!existsSync(join(dir, "config.json"))) {
    throw new TypeError(
      `generate: --model ${file}: its folder has no config.json; put the model's config.json beside the .onnx file ` +
        `(as Optimum's export does) or pass the model folder`,
    );
  }
  return dir;
}

/**
 * The ONNX decoder for `--backend onnx`: the given `.onnx` file with its folder's config, or the
 * model folder exported on the fly (weights read on the cpu backend) to a temporary file.
 */
async function onnxDecoder(dir: string, onnxFile: string | null): Promise<OnnxDecoder> {
  if (onnxFile) {
    return await OnnxDecoder.load(onnxFile); // with the config.json of its folder (onnxFolder checked it)
  }
  const be = await createBackend("cpu");
  const tmp = await Deno.makeTempDir({ prefix: "fledge-onnx-" });
  try {
    let config: ModelConfig;
    const model = await loadModel(dir, { backend: be });
    try {
      config = model.config;
      await exportOnnx(model, join(tmp, "model.onnx"));
    } finally {
      model.dispose();
    }
    return await OnnxDecoder.load(join(tmp, "model.onnx"), { config });
  } finally {
    be.destroy();
    await Deno.remove(tmp, { recursive: true });
  }
}

function parseIds(s: string): number[] {
  const parts = s.split(",").map((x) => x.trim());
  const bad = parts.find((x) => !/^\d+$/.test(x));
  if (bad !== undefined) {
    throw new RangeError(
      `generate: --input_ids ${s}: ${JSON.stringify(bad)} is not a token id; give comma-separated integers`,
    );
  }
  return parts.map(Number);
}
