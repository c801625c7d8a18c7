/**
 * `fledge generate`: load a model folder or hub id, generate from a text prompt (with the folder's
 * tokenizer) or from token ids, and stream the continuation to stdout or print it as JSON.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseFlags, writeErr, writeOut } from "../util/flags.ts";
import { type BackendName, createBackend } from "../kernels/backend.ts";
import { generate, type GenerateOptions, loadGenerationConfig } from "../models/generate.ts";
import { downloadModel } from "../models/hub/hub.ts";
import { loadModel } from "../models/pretrained.ts";
import { loadTokenizer, type Tokenizer } from "../models/tokenizer/tokenizer.ts";

/** Usage text of {@linkcode generateCli}. */
export const GENERATE_USAGE =
  `usage: fledge generate --model DIR_OR_ID (--prompt TEXT | --input-ids 1,2,3) [options]

  --model DIR_OR_ID          a folder with config.json + model.safetensors, or a hub id (org/name)
  --prompt TEXT              text prompt (needs tokenizer.json in the model folder)
  --input-ids 1,2,3          prompt token ids
  --max-new-tokens N         new tokens (default: generation_config.json, else HF's max_length 20)
  --greedy                   argmax decoding (do_sample false)
  --do-sample                sample (implied by --temperature, --top-k, --top-p without --greedy)
  --temperature T            > 0
  --top-k K                  keep the K most likely tokens (0 = off)
  --top-p P                  nucleus sampling, in (0, 1]
  --repetition-penalty R     > 0 (1 = off)
  --seed S                   sampler seed (same seed, same tokens)
  --stop TEXT                stop string (repeatable; needs the tokenizer)
  --backend webgpu|cpu|auto  default auto
  --json                     print {"tokens":[...]} (new tokens only; plus "text" with a tokenizer)
  -h, --help                 this text

Flags may also be spelled with underscores (--max_new_tokens), as the Hugging Face field names.
Without --json the continuation streams to stdout (text with a tokenizer, else ids).`;

/** Where {@linkcode generateCli} writes (stdout and stderr by default; tests capture them). */
export interface GenerateCliOptions {
  /** Receives the continuation or the JSON line. */
  stdout?: (text: string) => void;
  /** Receives the summary line (tokens, time, finish reason). */
  stderr?: (text: string) => void;
}

const FLAGS = {
  model: { type: "string" },
  prompt: { type: "string" },
  "input-ids": { type: "string" },
  "max-new-tokens": { type: "string" },
  greedy: { type: "boolean" },
  "do-sample": { type: "boolean" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  "repetition-penalty": { type: "string" },
  seed: { type: "string" },
  stop: { type: "string", multiple: true },
  backend: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/**
 * Run `fledge generate` with command-line `args`. Bad flags throw a one-line {@linkcode RangeError}
 * or {@linkcode TypeError} (the CLI maps them to exit code 2).
 *
 * @param args the arguments after `generate`
 * @param opts writers for stdout / stderr
 * @throws {RangeError} for unknown flags or bad values; {@linkcode TypeError} for a missing model
 *   folder, a missing prompt, or `--prompt` / `--stop` without a tokenizer
 * @example
 * ```ts
 * import { generateCli } from "./generate.ts";
 * let out = "";
 * await generateCli(["--help"], { stdout: (s) => out += s });
 * if (!out.includes("--max-new-tokens")) throw new Error(out);
 * ```
 */
export async function generateCli(args: string[], opts: GenerateCliOptions = {}): Promise<void> {
  const out = opts.stdout ?? writeOut, err = opts.stderr ?? writeErr;
  const v = parseFlags("generate", args, FLAGS);
  if (v.help) return out(GENERATE_USAGE + "\n");
  if (!v.model) throw new TypeError("generate: --model is required: a model folder or a hub id (org/name)");
  if ((v.prompt === undefined) === (v["input-ids"] === undefined)) {
    throw new TypeError("generate: give exactly one of --prompt TEXT or --input-ids 1,2,3");
  }
  if (v.greedy && v["do-sample"]) {
    throw new RangeError("generate: --greedy and --do-sample exclude each other");
  }
  const backend = (v.backend ?? "auto") as BackendName;
  if (!["webgpu", "cpu", "auto"].includes(backend)) {
    throw new RangeError(`generate: --backend ${v.backend} is not one of webgpu, cpu, auto`);
  }
  const gen: GenerateOptions = {
    max_new_tokens: int(v, "max-new-tokens", 1),
    temperature: num(v, "temperature"),
    top_k: int(v, "top-k", 0),
    top_p: num(v, "top-p"),
    repetition_penalty: num(v, "repetition-penalty"),
    seed: int(v, "seed", 0),
    stop_strings: v.stop,
  };
  const sampling = gen.temperature !== undefined || gen.top_k !== undefined || gen.top_p !== undefined;
  gen.do_sample = v.greedy ? false : v["do-sample"] || sampling ? true : undefined;
  const inputIds = v["input-ids"] === undefined ? null : parseIds(v["input-ids"]);

  const dir = await modelFolder(v.model);
  const hasTokenizer = existsSync(join(dir, "tokenizer.json"));
  if (v.prompt !== undefined && !hasTokenizer) {
    throw new TypeError(
      `generate: --prompt needs a tokenizer, but ${dir} has no tokenizer.json; pass --input-ids 1,2,3 instead`,
    );
  }
  if (v.stop && !hasTokenizer) {
    throw new TypeError(`generate: --stop needs a tokenizer, but ${dir} has no tokenizer.json`);
  }
  const tokenizer = hasTokenizer ? await loadTokenizer(dir) : undefined;
  const prompt = inputIds ?? tokenizer!.encode(v.prompt!);
  const be = await createBackend(backend);
  try {
    const model = await loadModel(dir, { backend: be });
    try {
      gen.generation_config = await loadGenerationConfig(dir);
      gen.tokenizer = tokenizer;
      const stream = v.json ? null : streamer(out, tokenizer, v.stop ?? []);
      const t0 = performance.now();
      const r = await generate(model, [prompt], { ...gen, onToken: stream?.onToken });
      const secs = (performance.now() - t0) / 1000;
      if (v.json) {
        const json: { tokens: number[]; text?: string } = { tokens: r.tokens[0] };
        if (r.text) json.text = r.text[0];
        out(JSON.stringify(json) + "\n");
      } else stream!.end(r.text?.[0]);
      const n = r.tokens[0].length;
      err(
        `generate: ${n} tokens in ${secs.toFixed(2)} s (${(n / secs).toFixed(1)} tokens/s) on ${be.name}, ` +
          `finish_reason ${r.finish_reason[0]}\n`,
      );
    } finally {
      model.dispose();
    }
  } finally {
    be.destroy();
  }
}

/** `--max_new_tokens=8` -> `--max-new-tokens=8` (HF field names are accepted as flags). */

function int(v: Record<string, unknown>, flag: string, min: number): number | undefined {
  const s = v[flag] as string | undefined;
  if (s === undefined) return undefined;
  const n = Number(s);
  if (s.trim() === "" || !Number.isInteger(n) || n < min) {
    throw new RangeError(`generate: --${flag} ${s} is not an integer >= ${min}`);
  }
  return n;
}

function num(v: Record<string, unknown>, flag: string): number | undefined {
  const s = v[flag] as string | undefined;
  if (s === undefined) return undefined;
  const n = Number(s);
  if (s.trim() === "" || !Number.isFinite(n)) {
    throw new RangeError(`generate: --${flag} ${s} is not a number`);
  }
  return n;
}

function parseIds(s: string): number[] {
  const parts = s.split(",").map((x) => x.trim());
  const bad = parts.find((x) => !/^\d+$/.test(x));
  if (bad !== undefined) {
    throw new RangeError(
      `generate: --input-ids ${s}: ${JSON.stringify(bad)} is not a token id; give comma-separated integers`,
    );
  }
  return parts.map(Number);
}

/** A local folder as is; a hub id through the hub cache / download; a missing path is an error. */
async function modelFolder(model: string): Promise<string> {
  let isDir = false;
  try {
    isDir = Deno.statSync(model).isDirectory;
  } catch { /* not a local path */ }
  if (isDir) return model;
  const pathLike = /^[.~/\\]/.test(model) || model.split("/").length > 2 || /\\/.test(model);
  if (pathLike || existsSync(model)) {
    throw new TypeError(
      `generate: --model ${model}: no such folder; give a folder with config.json and model.safetensors, or a hub id like org/name`,
    );
  }
  return await downloadModel(model);
}

/** Streams the continuation: text deltas with a tokenizer (stop-string tails held back), else ids. */
function streamer(out: (s: string) => void, tok: Tokenizer | undefined, stops: string[]) {
  const ids: number[] = [];
  let printed = 0;
  const hold = Math.max(0, ...stops.map((s) => s.length - 1));
  return {
    onToken(t: (number | null)[]) {
      if (t[0] === null) return;
      ids.push(t[0]);
      if (!tok) return out(`${ids.length > 1 ? " " : ""}${t[0]}`);
      const text = tok.decode(ids, { skip_special_tokens: true });
      let safe = text.length - hold;
      const bad = text.indexOf("\uFFFD", printed); // an incomplete UTF-8 sequence may still grow
      if (bad >= 0) safe = Math.min(safe, bad);
      if (safe > printed) {
        out(text.slice(printed, safe));
        printed = safe;
      }
    },
    end(final: string | undefined) {
      if (final !== undefined && final.length > printed) out(final.slice(printed));
      out("\n");
    },
  };
}
