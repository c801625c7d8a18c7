/**
 * What `generate` and `chat` share: the model folder of a `--model` flag (a local folder as is, a
 * hub id through the hub cache / download) and the streamer that prints a continuation as it grows;
 * and what `merge`, `export` and `eval` share: the note on an adapter applied to another base.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { downloadModel } from "../models/hub/hub.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import type { Transformer } from "../models/transformer.ts";
import { otherAdapterBase, type PeftConfig } from "../training/peft.ts";
import type { CliIO } from "./command.ts";
import type { GenerationConfig } from "../models/generation_config.ts";
import { agree } from "../util/problems.ts";

/**
 * A local folder as is; a hub id through the hub cache / download; a missing path is an error.
 * @param model the `--model` value
 * @param cmd the command, named in errors
 * @returns a local folder with config.json
 * @throws {TypeError} a folder without config.json, a path that does not exist
 */
export async function modelFolder(model: string, cmd: string): Promise<string> {
  let isDir = false;
  try {
    isDir = Deno.statSync(model).isDirectory;
  } catch { /* not a local path */ }
  if (isDir) {
    if (!existsSync(join(model, "config.json"))) {
      throw new TypeError(
        `${cmd}: --model ${model} has no config.json; give a model folder (config.json and model.safetensors) or a hub id like org/name`,
      );
    }
    return model;
  }
  if (existsSync(model)) { // a file of a model folder (config.json, model.safetensors)
    throw new TypeError(
      `${cmd}: --model ${model} is a file; give the folder that holds it (${dirname(model) || "."})`,
    );
  }
  const pathLike = /^[.~/\\]/.test(model) || model.split("/").length > 2 || /\\/.test(model);
  if (pathLike) {
    throw new TypeError(
      `${cmd}: --model ${model}: no such folder; give a folder with config.json and model.safetensors, or a hub id like org/name`,
    );
  }
  return await downloadModel(model);
}

/** What {@linkcode createStreamer} returns: `onToken` for generate(), `end` once it returned. */
export interface TextStreamer {
  /** generate()'s `onToken`: prints the new text of row 0 (or its ids without a tokenizer). */
  onToken(t: (number | null)[]): void;
  /** Prints what is left of the final text (stop-string tails held back until now) and a newline. */
  end(final: string | undefined): void;
}

/**
 * Streams the continuation of row 0: text deltas with a tokenizer (stop-string tails and incomplete
 * UTF-8 held back), else ids separated by spaces.
 * @param out where text goes
 * @param tok the tokenizer, if any
 * @param stops stop strings (their length - 1 characters are held back)
 * @returns the streamer
 */
export function createStreamer(
  out: (s: string) => void,
  tok: Tokenizer | undefined,
  stops: string[],
): TextStreamer {
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
      // a stop completed by this token: print nothing of it (holding back its length - 1 only
      // covers a stop not yet complete; one ending here had its first character printed)
      for (const s of stops) {
        const at = text.indexOf(s, printed);
        if (at >= 0) safe = Math.min(safe, at);
      }
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

/** The sampler flags `generate` and `chat` share (Hugging Face `GenerationConfig` names). */
export const SAMPLER_FLAGS = {
  greedy: { type: "boolean" },
  do_sample: { type: "boolean" },
  temperature: { type: "number" },
  top_k: { type: "int", min: 0 },
  top_p: { type: "number" },
  repetition_penalty: { type: "number" },
  seed: { type: "int", min: 0, max: 0xffffffff },
} as const;

/**
 * Refuse `--seed` when generation does not sample after all (the folder's generation_config.json
 * says `do_sample: false` and no flag turned sampling on): the seed would change nothing.
 * @throws {RangeError} naming the file and the fix
 */
export function checkSeedSamples(
  cmd: string,
  seed: number | undefined,
  doSample: boolean | undefined,
  gc: GenerationConfig,
  dir: string,
): void {
  if (seed === undefined || (doSample ?? gc.do_sample ?? false)) return;
  throw new RangeError(
    `${cmd}: --seed is for sampling, and sampling is off (do_sample false or unset in ${
      join(dir, "generation_config.json")
    }, HF's default); add --do_sample or drop --seed`,
  );
}

/**
 * Refuse sampling at temperature 0 when the folder's generation_config.json set it (HF refuses it
 * too): named by the file, not as a `generate()` option the user never wrote.
 * @throws {RangeError} naming the file and the fix
 */
export function checkFolderTemperature(
  cmd: string,
  doSample: boolean | undefined,
  temperature: number | undefined,
  gc: GenerationConfig,
  dir: string,
): void {
  if (temperature !== undefined || gc.temperature !== 0 || !(doSample ?? gc.do_sample ?? false)) return;
  throw new RangeError(
    `${cmd}: ${join(dir, "generation_config.json")} sets temperature 0${
      doSample === undefined ? " with do_sample true" : ""
    }, and sampling needs a temperature > 0; pass --temperature T, or --greedy (without --seed)`,
  );
}

/** The values of {@linkcode SAMPLER_FLAGS}. */
export interface SamplerFlagValues {
  greedy: boolean;
  do_sample: boolean;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  repetition_penalty?: number;
  seed?: number;
}

/**
 * The generation options of the sampler flags: `--greedy` turns sampling off, `--do_sample` or any
 * of `--temperature`, `--top_k`, `--top_p` turns it on, neither leaves generation_config.json's.
 * @throws {RangeError} for `--greedy` with `--do_sample`, or with a flag only sampling reads
 *   (`--temperature`, `--top_k`, `--top_p`, `--seed`; HF warns that these are unused)
 */
export function samplerOptions(cmd: string, v: SamplerFlagValues): {
  temperature?: number;
  top_k?: number;
  top_p?: number;
  repetition_penalty?: number;
  seed?: number;
  do_sample?: boolean;
} {
  if (v.greedy && v.do_sample) throw new RangeError(`${cmd}: --greedy and --do_sample exclude each other`);
  const sampling = v.temperature !== undefined || v.top_k !== undefined || v.top_p !== undefined;
  const samplerOnly = (["temperature", "top_k", "top_p", "seed"] as const).filter((k) => v[k] !== undefined);
  if (v.greedy && samplerOnly.length) {
    throw new RangeError(
      `${cmd}: ${samplerOnly.map((k) => `--${k}`).join(", ")} ${
        agree(samplerOnly).is
      } for sampling, and --greedy turns it off; drop one or the other`,
    );
  }
  return {
    temperature: v.temperature,
    top_k: v.top_k,
    top_p: v.top_p,
    repetition_penalty: v.repetition_penalty,
    seed: v.seed,
    do_sample: v.greedy ? false : v.do_sample || sampling ? true : undefined,
  };
}

/**
 * Say on stderr, in one line, when an adapter names another base model than the one it was applied
 * to ({@linkcode otherAdapterBase}): it loads when the shapes agree and then gives other outputs.
 * @param io where the note goes
 * @param cmd the command, named in the note
 * @param adapter the adapter folder
 * @param c its config, as `loadAdapter` returned it
 * @param model the model it was loaded onto
 * @param name the model as named (`--model`)
 */
export async function noteAdapterBase(
  io: Pick<CliIO, "stderr">,
  cmd: string,
  adapter: string,
  c: PeftConfig,
  model: Transformer,
  name: string,
): Promise<void> {
  const other = await otherAdapterBase(c, model, name);
  if (other === null) return;
  io.stderr(
    `${cmd}: note: the adapter ${adapter} was trained on ${other} (its base_model_name_or_path), and is applied ` +
      `to ${name}; give --model ${other} unless the two hold the same weights\n`,
  );
}
