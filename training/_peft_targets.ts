/**
 * Private: the Hugging Face linear modules of a model (from the family's checkpoint key map) and
 * PEFT's rules for picking LoRA targets among them. A fused HF module (phi3 `qkv_proj`, gpt2
 * `c_attn`, phi3 `gate_up_proj`) maps to several canonical linears, each a block of its output rows.
 * @module
 */
import { closest } from "../util/problems.ts";
import { checkpointKeyMap, type ModelConfig } from "../models/config.ts";

/** One canonical linear inside an HF module: its name (`layers.0.attn.k`) and its output rows. */
export interface TargetPart {
  linear: string;
  rows: number;
}

/** One HF linear module of one layer. */
export interface TargetModule {
  /** Full module path in the HF model, e.g. `model.layers.0.self_attn.qkv_proj`. */
  hf: string;
  /** Last path component, e.g. `qkv_proj`. */
  name: string;
  in_features: number;
  out_features: number;
  /** GPT-2 Conv1D (weight stored `[in, out]`): PEFT sets `fan_in_fan_out`. */
  conv1d: boolean;
  /** The canonical linears, in row order. */
  parts: TargetPart[];
}

const LINEAR = /^layers\.\{i\}\.(attn|mlp)\.[a-z_]+\.weight$/;

/** Every HF linear module of the model (PEFT's "all-linear" set: the LM head is left out). */
export function linearModules(config: ModelConfig): TargetModule[] {
  const map = checkpointKeyMap(config);
  const out: TargetModule[] = [];
  for (let i = 0; i < config.num_hidden_layers; i++) {
    for (const e of map.entries) {
      if (!e.per_layer || !e.ours.every((o) => LINEAR.test(o)) || !e.hf.endsWith(".weight")) continue;
      const hf = e.hf.replaceAll("{i}", String(i)).slice(0, -".weight".length);
      const [o, inF] = e.transpose ? [e.hf_shape[1], e.hf_shape[0]] : [e.hf_shape[0], e.hf_shape[1]];
      const rows = e.split_rows ?? [o];
      out.push({
        hf,
        name: hf.slice(hf.lastIndexOf(".") + 1),
        in_features: inF,
        out_features: o,
        conv1d: e.transpose,
        parts: e.ours.map((n, j) => ({
          linear: n.replaceAll("{i}", String(i)).slice(0, -".weight".length),
          rows: rows[j],
        })),
      });
    }
  }
  return out;
}

/**
 * The modules PEFT would adapt for `target_modules`: a list matches a module whose path equals an
 * entry or ends with `.` + entry; a string other than `all-linear` must match the whole path as a
 * regular expression (`re.fullmatch`).
 * @throws {RangeError} when an entry matches nothing (with the model's module names) or nothing is selected
 */
export function selectTargets(
  config: ModelConfig,
  target_modules: readonly string[] | string,
  where: string,
): TargetModule[] {
  const all = linearModules(config);
  const names = [...new Set(all.map((m) => m.name))];
  if (target_modules === "all-linear") return all;
  if (typeof target_modules === "string") {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${target_modules})$`);
    } catch (e) {
      throw new RangeError(
        `Cannot apply LoRA: ${where}target_modules is not a valid regular expression: ${
          (e as Error).message
        }`,
      );
    }
    const picked = all.filter((m) => re.test(m.hf));
    if (!picked.length) {
      throw new RangeError(
        `Cannot apply LoRA: ${where}target_modules ${
          JSON.stringify(target_modules)
        } matches no linear module of this ${config.arch} model; module names: ${names.join(", ")}`,
      );
    }
    return picked;
  }
  const hit = (m: TargetModule, t: string) => m.hf === t || m.hf.endsWith("." + t);
  const missing = target_modules.filter((t) => !all.some((m) => hit(m, t)));
  if (missing.length) {
    const hints = missing.map((t) => {
      const c = closest(t, names);
      return `${JSON.stringify(t)}${c ? ` (did you mean ${JSON.stringify(c)}?)` : ""}`;
    });
    throw new RangeError(
      `Cannot apply LoRA: ${where}target_modules ${
        hints.join(", ")
      } not found in this ${config.arch} model; its linear modules are: ${
        names.join(", ")
      } (or "all-linear")`,
    );
  }
  const picked = all.filter((m) => target_modules.some((t) => hit(m, t)));
  if (!picked.length) throw new RangeError(`Cannot apply LoRA: ${where}target_modules is empty`);
  return picked;
}
