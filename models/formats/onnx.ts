/**
 * ONNX export: the decoder with past key/values as one ONNX model that onnxruntime runs, in
 * Optimum's layout (`input_ids`, `attention_mask`, `position_ids`, `past_key_values.{i}.key|value`
 * -> `logits`, `present.{i}.key|value`), standard ops only (default domain, opset 17 or later; see
 * `_onnx_graph.ts` for the graph), written from TypeScript by a small protobuf encoder
 * (`_onnx_proto.ts`). Weights are float32, streamed from the device one tensor at a time.
 *
 * Models over 2 GB (protobuf's limit for one message), or any with `external_data: true`, keep
 * their weights in a `<file>.data` file beside the model (`TensorProto.data_location = EXTERNAL`,
 * 4096-byte aligned offsets, ONNX's external-data convention). Both files land atomically.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { pathExists, refuseFolder, writeFileAtomic } from "../../util/atomic.ts";
import { checkPathArg, refuseUnknownOptions } from "../../util/problems.ts";
import { checkTokenizerArg, refuseOtherFormat } from "./_export_args.ts";
import { SAVED_TOKENIZER_FILES, type Tokenizer } from "../tokenizer/tokenizer.ts";
import type { Transformer } from "../transformer.ts";
import { configFiles } from "../save.ts";
import { decoderGraph } from "./_onnx_graph.ts";
import { encodeModel, type ModelSpec, type Part, type TensorSpec, writeParts } from "./_onnx_proto.ts";

/** Options of {@linkcode exportOnnx}. */
export interface ExportOnnxOptions {
  /**
   * Saved beside the model (`tokenizer.json` and its companions), as Optimum's export folder holds
   * it: the folder runs as it is. `config.json` and `generation_config.json` are written beside the
   * model with or without it (an ONNX folder without its config cannot be run).
   */
  tokenizer?: Tokenizer;
  /** The default-domain opset, 17 to 21. Default 17 (what Debian's python3-onnx 1.12 checks). */
  opset?: number;
  /** Replace an existing file. Default false: an existing file is an error. */
  overwrite?: boolean;
  /** Weights in `<file>.data` beside the model. Default: only when the model is over 2 GB. */
  external_data?: boolean;
}

/** What {@linkcode exportOnnx} wrote. */
export interface ExportOnnxResult {
  /** The `.onnx` file. */
  path: string;
  /** The external data file, or null when the weights are inside the model file. */
  data_path: string | null;
  /** Bytes written, both files together. */
  bytes: number;
  /** The default-domain opset of the graph. */
  opset: number;
  /** Graph input names, in order. */
  inputs: string[];
  /** Graph output names, in order. */
  outputs: string[];
}

/** The opsets the graph is written for, and the IR version each needs (onnx `VERSION_TABLE`). */
const IR_VERSION: Record<number, number> = { 17: 8, 18: 8, 19: 9, 20: 9, 21: 10 };
/** Protobuf refuses messages of 2 GiB and more; keep a margin for the graph itself. */
const INLINE_LIMIT = 2 ** 31 - 2 ** 26;
const ALIGN = 4096;

/**
 * Check that `model` can be exported and the options are sound; every problem in one line.
 * @throws {RangeError} for an opset out of range, an attached adapter (merge it first), or a plain
 *   MLP with `hidden_act` relu/silu (the decoder itself refuses those)
 * @throws {TypeError} for options of the wrong type
 */
function checkExport(model: Transformer, opts: ExportOnnxOptions): number {
  const opset = opts.opset ?? 17;
  if (!Number.isInteger(opset) || !(opset in IR_VERSION)) {
    throw new RangeError(
      `Cannot export ONNX: opset ${opset} is not supported; use 17 to 21 (17 is the default)`,
    );
  }
  for (const k of ["overwrite", "external_data"] as const) {
    if (opts[k] !== undefined && typeof opts[k] !== "boolean") {
      throw new TypeError(
        `Cannot export ONNX: option ${k} must be a boolean, got ${JSON.stringify(opts[k])}`,
      );
    }
  }
  if (model.adapters.size) {
    throw new RangeError(
      `Cannot export ONNX: the model has ${model.adapters.size} adapter layers attached; merge them first ` +
        `(mergeAdapter, or cli merge) and export the merged model`,
    );
  }
  const c = model.config;
  if (c.mlp === "gelu" && (c.hidden_act === "relu" || c.hidden_act === "silu")) {
    throw new RangeError(
      `Cannot export ONNX: config hidden_act "${c.hidden_act}" with mlp "gelu" is not supported by the decoder; ` +
        `use a gelu hidden_act`,
    );
  }
  return opset;
}

/** The error for an output folder that cannot be written, on one line. */
function unwritable(path: string, e: unknown): Error {
  const why = e instanceof Error ? e.message.split(":")[0] : String(e);
  return new Deno.errors.PermissionDenied(
    `Cannot export ONNX to ${path}: the folder ${dirname(path)} is not writable (${why}); ` +
      `choose an output path in a writable folder`,
  );
}

/** The files an export writes beside the model, by name: the configs, and a tokenizer's when given. */
async function besideFiles(model: Transformer, tokenizer?: Tokenizer): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  const enc = new TextEncoder();
  // config.json: Optimum's ORTModelForCausalLM (and generate --backend onnx) need it, tokenizer or not;
  // a config HF cannot write (a test's interleaved rotary) leaves only the graph when no tokenizer asks for it
  const configs = await configFiles(model).catch((e) => {
    if (tokenizer || !(e instanceof RangeError)) throw e;
    return {};
  });
  for (const [name, text] of Object.entries(configs)) out.set(name, enc.encode(text));
  if (!tokenizer) return out;
  const tmp = await Deno.makeTempDir({ prefix: "fledge-onnx-tokenizer-" });
  try {
    await tokenizer.save(tmp);
    for (const name of SAVED_TOKENIZER_FILES) {
      const bytes = await Deno.readFile(join(tmp, name)).catch(() => null);
      if (bytes) out.set(name, bytes);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function isWriteDenied(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotADirectory ||
    code === "EROFS" || code === "EACCES" || code === "EPERM" || code === "ENOTDIR";
}

/**
 * Export a decoder to ONNX (see the module doc for the layout). The graph's logits match
 * {@linkcode Transformer.forward} (causal + padding masks from `attention_mask`, positions from
 * `position_ids`, the config's sliding window), including left-padded batches and decoding with
 * the past key/values. 4-bit weights are dequantized and f16 weights widened to f32.
 *
 * @param model the decoder (any backend; no adapter attached)
 * @param path the `.onnx` file to write (its folder is made if missing)
 * @param opts {@linkcode ExportOnnxOptions}
 * @returns what was written
 * @throws {Deno.errors.AlreadyExists} when `path` (or its `.data` file, or a config or tokenizer file
 *   beside it that holds other bytes) exists and `overwrite` is not set
 * @throws {Deno.errors.PermissionDenied} when the output folder is not writable (one line)
 * @throws {RangeError} for an unsupported opset or model (an adapter attached, an unsupported config)
 *
 * @example
 * ```ts
 * import { createBackend } from "../../kernels/backend.ts";
 * import { presetConfig } from "../config.ts";
 * import { Transformer } from "../transformer.ts";
 * import { exportOnnx } from "./onnx.ts";
 * const be = await createBackend("cpu");
 * const model = Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 32 }), be);
 * const dir = await Deno.makeTempDir();
 * const r = await exportOnnx(model, `${dir}/model.onnx`);
 * if (r.inputs[0] !== "input_ids" || r.outputs[1] !== "present.0.key") throw new Error(r.outputs.join());
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function exportOnnx(
  model: Transformer,
  path: string,
  opts: ExportOnnxOptions = {},
): Promise<ExportOnnxResult> {
  checkPathArg(path, "exportOnnx");
  refuseUnknownOptions(opts, ["tokenizer", "opset", "overwrite", "external_data"], "exportOnnx");
  checkTokenizerArg(opts.tokenizer, "exportOnnx");
  refuseOtherFormat(path, "ONNX", ".gguf");
  const opset = checkExport(model, opts);
  const dataPath = `${path}.data`;
  // With a tokenizer the folder runs as it is (Optimum's layout): config.json, generation_config.json
  // and the tokenizer's files beside the model. Never over other files unasked; the same bytes (a
  // second export of the model into the folder) are no change.
  const dir = dirname(path) || ".";
  if (opts.tokenizer && opts.tokenizer.vocab_size > model.config.vocab_size) {
    throw new RangeError(
      `Cannot export ONNX to ${path}: the tokenizer has ${opts.tokenizer.vocab_size} ids but the model's ` +
        `vocab_size is ${model.config.vocab_size}; use the model's own tokenizer`,
    );
  }
  const beside = await besideFiles(model, opts.tokenizer);
  const differs = async (name: string) => {
    const old = await Deno.readFile(join(dir, name)).catch(() => null);
    return old !== null && !sameBytes(old, beside.get(name)!);
  };
  for (const p of [path, dataPath]) {
    await refuseFolder(p); // before the files beside it are written
    if (!opts.overwrite && await pathExists(p)) {
      throw new Deno.errors.AlreadyExists(
        `Cannot export ONNX to ${path}: ${p} exists; pass overwrite (--overwrite) or choose another path`,
      );
    }
  }
  for (const name of beside.keys()) {
    if (!opts.overwrite && await differs(name)) {
      throw new Deno.errors.AlreadyExists(
        `Cannot export ONNX to ${path}: ${
          join(dir, name)
        } exists and differs, likely another model's export in this folder (an ONNX export writes its ` +
          `config and tokenizer beside the .onnx file); export into a folder of its own, or pass overwrite ` +
          `(--overwrite) to replace them, which breaks that other export`,
      );
    }
  }
  const graph = decoderGraph(model, opset);
  const weightBytes = graph.weights.reduce((a, w) => a + w.bytes.size, 0);
  const external = opts.external_data ?? weightBytes > INLINE_LIMIT;
  let initializers: TensorSpec[];
  let dataSize = 0;
  const dataParts: Part[] = [];
  if (external) {
    const location = basename(dataPath);
    initializers = graph.weights.map((w) => {
      const pad = (ALIGN - dataSize % ALIGN) % ALIGN;
      if (pad) dataParts.push(new Uint8Array(pad));
      const offset = dataSize + pad;
      dataParts.push(w.bytes);
      dataSize = offset + w.bytes.size;
      return {
        name: w.name,
        dims: w.dims,
        data_type: 1,
        data: { location, offset, length: w.bytes.size },
      };
    });
  } else {initializers = graph.weights.map((w) => ({
      name: w.name,
      dims: w.dims,
      data_type: 1,
      data: w.bytes,
    })
    );}
  const spec: ModelSpec = {
    ir_version: IR_VERSION[opset],
    opset,
    producer_name: "fledge",
    producer_version: "0.1.0",
    doc_string: `${model.config.arch} decoder with past key/values (Optimum layout)`,
    graph_name: `${model.config.arch}_decoder`,
    nodes: graph.nodes,
    initializers: [...graph.constants, ...initializers],
    inputs: graph.inputs,
    outputs: graph.outputs,
    metadata: { model_type: model.config.arch },
  };
  const encoded = encodeModel(spec);
  try {
    await Deno.mkdir(dirname(path) || ".", { recursive: true });
  } catch (e) {
    // AlreadyExists from a recursive mkdir: a part of the folder's path is a file
    if (isWriteDenied(e) || e instanceof Deno.errors.AlreadyExists) throw unwritable(path, e);
    throw e;
  }
  // The graph goes last: a kill before it leaves files a second export takes as they are (the same
  // bytes), never a graph without its config.json (the rerun had been refused, the folder unrunnable)
  try {
    for (const [name, bytes] of beside) await writeFileAtomic(join(dir, name), bytes);
    if (external) await writeFileAtomic(dataPath, (f) => writeParts(f, dataParts));
    await writeFileAtomic(path, (f) => writeParts(f, encoded.parts), { replace: !!opts.overwrite });
    // A model written inline must not sit beside a stale external file it does not use.
    if (!external && opts.overwrite && await pathExists(dataPath)) await Deno.remove(dataPath);
  } catch (e) {
    if (isWriteDenied(e)) throw unwritable(path, e);
    throw e;
  }
  return {
    path,
    data_path: external ? dataPath : null,
    bytes: encoded.size + dataSize,
    opset,
    inputs: graph.inputs.map((v) => v.name),
    outputs: graph.outputs.map((v) => v.name),
  };
}
