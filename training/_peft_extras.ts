/**
 * Private: the base tensors a PEFT adapter trains and saves besides `lora_A` / `lora_B` — biases
 * (`bias: "all"`: every bias; `"lora_only"`: those of the adapted modules) and whole modules
 * (`modules_to_save`, e.g. `lm_head`, `embed_tokens`). PEFT saves them under
 * `base_model.model.<Hugging Face name>` in `adapter_model.safetensors`, but for the bias of an
 * adapted module, which PEFT's `lora.Linear` holds in its wrapped `base_layer`:
 * `base_model.model.<module>.base_layer.bias`. Here each is assembled from the canonical parameters
 * the checkpoint key map names (fused rows stacked, Conv1D transposed).
 * @module
 */
import { checkpointKeyMap, type ModelConfig } from "../models/config.ts";
import type { PeftConfig } from "./_peft_config.ts";
import type { TargetModule } from "./_peft_targets.ts";

/** One extra tensor in PEFT's key and layout, and the canonical parameters it holds. */
export interface ExtraTensor {
  /** `base_model.model.<HF parameter name>` (`<module>.base_layer.bias` for an adapted module's bias). */
  key: string;
  /** The key fledge wrote before it followed PEFT's `base_layer` name, read too; else null. */
  old_key: string | null;
  /** Its shape in the HF layout. */
  hf_shape: number[];
  /** Canonical parameter names, stacked by rows. */
  ours: string[];
  /** Rows of each canonical piece (after transposing), or null for one piece. */
  split_rows: number[] | null;
  /** Stored `[in, out]` (Conv1D): ours are `[out, in]`. */
  transpose: boolean;
}

type HfParameter = Omit<ExtraTensor, "old_key"> & { module: string; hf: string };

/** Every HF parameter of the model with its module path, layer-expanded. */
function hfParameters(config: ModelConfig): HfParameter[] {
  const map = checkpointKeyMap(config);
  const out: HfParameter[] = [];
  for (const e of map.entries) {
    for (let i = 0; i < (e.per_layer ? config.num_hidden_layers : 1); i++) {
      const hf = e.hf.replaceAll("{i}", String(i));
      out.push({
        key: `base_model.model.${hf}`,
        hf,
        module: hf.slice(0, hf.lastIndexOf(".")),
        hf_shape: e.hf_shape,
        ours: e.ours.map((n) => n.replaceAll("{i}", String(i))),
        split_rows: e.split_rows,
        transpose: e.transpose,
      });
    }
  }
  return out;
}

/**
 * The extra tensors of an adapter config, in module order.
 * @throws {RangeError} when a `modules_to_save` entry matches no module (listing the model's modules),
 *   or `bias` trains biases the model does not have
 */
export function extraTensors(
  config: ModelConfig,
  c: PeftConfig,
  targets: readonly TargetModule[],
): ExtraTensor[] {
  const all = hfParameters(config);
  const adapted = new Set(targets.map((t) => t.hf));
  const save = c.modules_to_save ?? [];
  // PEFT 0.14 `_set_trainable`: `key.endswith(target_key)`, a plain suffix with no "." before it,
  // so "norm" also wraps every `input_layernorm` and `post_attention_layernorm`, and "head" `lm_head`.
  const hit = (module: string, name: string) => module.endsWith(name);
  const missing = save.filter((n) => !all.some((p) => hit(p.module, n)));
  if (missing.length) {
    const modules = [...new Set(all.map((p) => p.module.replace(/\.\d+\./, ".N.")))];
    throw new RangeError(
      `Cannot apply LoRA: modules_to_save ${
        missing.map((n) => JSON.stringify(n)).join(", ")
      } matches no module of ` +
        `this ${config.arch} model${
          config.tie_word_embeddings ? " (its LM head is tied to the embeddings)" : ""
        }; ` +
        `its modules are: ${modules.join(", ")}`,
    );
  }
  const picked = all.filter((p) => {
    const isBias = p.hf.endsWith(".bias");
    if (save.some((n) => hit(p.module, n))) return true;
    if (isBias && c.bias === "all") return true;
    return isBias && c.bias === "lora_only" && adapted.has(p.module);
  });
  // bias "all" / "lora_only" on a model with no such bias would train nothing more: refused
  if (c.bias !== "none" && !picked.some((p) => p.hf.endsWith(".bias"))) {
    throw new RangeError(
      `Cannot apply LoRA: bias "${c.bias}" trains the ${
        c.bias === "all" ? "model's" : "adapted layers'"
      } biases, and this ${config.arch} model has none there; set bias: "none"`,
    );
  }
  return picked.map(({ key, module, hf, hf_shape, ours, split_rows, transpose }) => {
    // PEFT wraps an adapted nn.Linear: its bias is `<module>.base_layer.bias` in the state dict
    // (a `<module>.bias` key loads into nothing there: load_state_dict(strict=False) skips it).
    const wrapped = hf.endsWith(".bias") && adapted.has(module);
    return {
      key: wrapped ? `base_model.model.${module}.base_layer.bias` : key,
      old_key: wrapped ? key : null,
      hf_shape,
      ours,
      split_rows,
      transpose,
    };
  });
}

/** The HF-layout data of `e` from its canonical pieces (host arrays in `ours` order). */
export function toHf(e: ExtraTensor, pieces: Float32Array[]): Float32Array {
  const rows = new Float32Array(pieces.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of pieces) {
    rows.set(p, off);
    off += p.length;
  }
  if (!e.transpose) return rows;
  const [inF, outF] = e.hf_shape;
  const t = new Float32Array(rows.length);
  for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) t[i * outF + o] = rows[o * inF + i];
  return t;
}

/** The canonical pieces of `e` from its HF-layout data, each with its shape. */
export function fromHf(
  e: ExtraTensor,
  data: Float32Array,
  shapes: readonly (readonly number[])[],
): Float32Array[] {
  let rows = data;
  if (e.transpose) {
    const [inF, outF] = e.hf_shape;
    rows = new Float32Array(data.length);
    for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) rows[o * inF + i] = data[i * outF + o];
  }
  const out: Float32Array[] = [];
  let off = 0;
  for (const s of shapes) {
    const n = s.reduce((a, b) => a * b, 1);
    out.push(rows.slice(off, off + n));
    off += n;
  }
  return out;
}
