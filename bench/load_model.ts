/**
 * Benchmark: host memory and time of `loadModel` on a generated llama-shaped f32 checkpoint
 * (default ~1 GB: hidden 2048, 32 heads / 4 KV heads, intermediate 5632, vocab 16384, 4 layers).
 * The checkpoint is streamed to a temp folder (never whole in memory), then loaded on the default
 * backend while a 10 ms timer samples `Deno.memoryUsage().rss`. One JSON line on stdout:
 * `{"bench":"load_model","bytes","tensor_bytes","largest_tensor_bytes","gpu_alloc_bytes",
 * "baseline_rss_mb","peak_rss_mb","final_rss_mb","ms","backend","adapter","shape"}`.
 *
 * What to read from it: the loader keeps one tensor's host copy alive beyond the parameters, so
 * `peak_rss_mb - baseline_rss_mb` should stay near `gpu_alloc_bytes` (webgpu; on llvmpipe the
 * "GPU" buffers are host memory too and count in RSS) or `tensor_bytes` (cpu), plus about one
 * `largest_tensor_bytes` in flight and garbage the collector has not yet returned.
 *
 * Run: `deno run -A bench/load_model.ts [--target_bytes 1e9] [--backend auto|webgpu|cpu]`.
 * @module
 */
import { parseFlags } from "../util/flags.ts";
import { join } from "node:path";
import { type Backend, createBackend } from "../kernels/backend.ts";
import { checkpointKeyMap, presetConfig, toHfConfig } from "../models/config.ts";
import { loadModel } from "../models/pretrained.ts";

/** The JSON line of one run. */
export interface LoadModelBenchRecord {
  bench: "load_model";
  /** Size of `model.safetensors`. */
  bytes: number;
  /** Sum of the parameters' bytes. */
  tensor_bytes: number;
  /** The largest single tensor (the most one in-flight host copy can cost). */
  largest_tensor_bytes: number;
  /** Bytes of GPU buffers created during the load (size classes round up); 0 on cpu. */
  gpu_alloc_bytes: number;
  baseline_rss_mb: number;
  peak_rss_mb: number;
  final_rss_mb: number;
  ms: number;
  backend: string;
  adapter: string;
  shape: string;
}

const MB = 2 ** 20;

/** A llama-shaped config of about `target` bytes in f32 (4 layers of hidden 2048 at 1 GB). */
function configFor(target: number) {
  const scale = Math.min(1, Math.sqrt(target / 1e9));
  const hidden = Math.max(64, Math.round((2048 * scale) / 64) * 64);
  const heads = hidden / 64;
  const kv = Math.max(1, Math.floor(heads / 8));
  const intermediate = Math.round((hidden * 2.75) / 32) * 32;
  const vocab = hidden * 8;
  const perLayer = 4 * (hidden * hidden * 2 + 2 * hidden * kv * 64 + 3 * hidden * intermediate + 2 * hidden);
  const fixed = 4 * (2 * vocab * hidden + hidden);
  const layers = Math.max(1, Math.round((target - fixed) / perLayer));
  return presetConfig("tiny", {
    vocab_size: vocab,
    hidden_size: hidden,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    head_dim: 64,
    intermediate_size: intermediate,
    max_position_embeddings: 2048,
    tie_word_embeddings: false,
  });
}

/**
 * Write `config.json` and a single `model.safetensors` of random f32 values, streaming 16 MB at a
 * time so the writer never holds the model.
 * @returns the file size
 */
async function writeCheckpoint(dir: string, target: number): Promise<{ bytes: number; shape: string }> {
  const config = configFor(target);
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(toHfConfig(config), null, 2));
  const map = checkpointKeyMap(config);
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  const list: [string, number][] = [];
  for (const e of map.entries) {
    for (let i = 0; i < (e.per_layer ? config.num_hidden_layers : 1); i++) {
      list.push([e.hf.replaceAll("{i}", String(i)), e.hf_shape.reduce((a, b) => a * b, 1)]);
      header[list.at(-1)![0]] = { dtype: "F32", shape: e.hf_shape, data_offsets: [0, 0] };
    }
  }
  list.sort(([a], [b]) => (a < b ? -1 : 1));
  let at = 0;
  for (const [name, n] of list) {
    (header[name] as { data_offsets: number[] }).data_offsets = [at, at + 4 * n];
    at += 4 * n;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const hb = new TextEncoder().encode(json);
  const file = await Deno.open(join(dir, "model.safetensors"), { write: true, create: true, truncate: true });
  try {
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(hb.length), true);
    await writeAll(file, len);
    await writeAll(file, hb);
    const chunk = new Float32Array(4 * MB);
    let s = 12345;
    for (let i = 0; i < chunk.length; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      chunk[i] = (s / 2 ** 32 - 0.5) * 0.04;
    }
    let left = at / 4;
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      await writeAll(file, new Uint8Array(chunk.buffer, 0, 4 * n));
      left -= n;
    }
  } finally {
    file.close();
  }
  const c = config;
  return {
    bytes: 8 + hb.length + at,
    shape:
      `llama L=${c.num_hidden_layers} C=${c.hidden_size} H=${c.num_attention_heads} Hkv=${c.num_key_value_heads} ` +
      `I=${c.intermediate_size} V=${c.vocab_size}`,
  };
}

async function writeAll(f: Deno.FsFile, b: Uint8Array): Promise<void> {
  let off = 0;
  while (off < b.length) off += await f.write(b.subarray(off));
}

/**
 * Generate a checkpoint of about `target_bytes`, load it and measure RSS during the load.
 * The temp folder is removed afterwards; the loaded parameters are disposed.
 */
export async function benchLoadModel(
  opts: { target_bytes?: number; backend?: Backend } = {},
): Promise<LoadModelBenchRecord> {
  const be = opts.backend ?? await createBackend("auto");
  const dir = await Deno.makeTempDir({ prefix: "fledge-bench-load-" });
  try {
    const { bytes, shape } = await writeCheckpoint(dir, opts.target_bytes ?? 1e9);
    const rss = () => Deno.memoryUsage().rss;
    await new Promise((r) => setTimeout(r, 50));
    const baseline = rss();
    let peak = baseline;
    const timer = setInterval(() => peak = Math.max(peak, rss()), 10);
    const gpu0 = be.gpu?.stats.bytesAllocated ?? 0;
    const t0 = performance.now();
    let model;
    try {
      model = await loadModel(dir, { backend: be });
      await be.sync();
    } finally {
      clearInterval(timer);
    }
    const ms = performance.now() - t0;
    peak = Math.max(peak, rss());
    const final = rss();
    const params = model.parameters();
    const record: LoadModelBenchRecord = {
      bench: "load_model",
      bytes,
      tensor_bytes: params.reduce((a, t) => a + t.bytes, 0),
      largest_tensor_bytes: Math.max(...params.map((t) => t.bytes)),
      gpu_alloc_bytes: (be.gpu?.stats.bytesAllocated ?? 0) - gpu0,
      baseline_rss_mb: Math.round(baseline / MB),
      peak_rss_mb: Math.round(peak / MB),
      final_rss_mb: Math.round(final / MB),
      ms: Math.round(ms),
      backend: be.name,
      adapter: be.adapter,
      shape,
    };
    for (const t of params) t.dispose();
    return record;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const values = parseFlags("bench", Deno.args, {
    target_bytes: { type: "int", min: 1 },
    backend: { type: "string", choices: ["auto", "webgpu", "cpu"], default: "auto" },
  });
  const name = values.backend;
  const r = await benchLoadModel({
    target_bytes: values.target_bytes,
    backend: await createBackend(name),
  });
  console.log(JSON.stringify(r));
  const extra = r.peak_rss_mb - r.baseline_rss_mb - Math.round((r.gpu_alloc_bytes || r.tensor_bytes) / MB);
  console.error(
    `load_model ${r.shape}: ${(r.bytes / MB).toFixed(0)} MB in ${r.ms} ms on ${r.backend} (${r.adapter}); ` +
      `RSS ${r.baseline_rss_mb} -> peak ${r.peak_rss_mb} MB (final ${r.final_rss_mb}); beyond the parameters ` +
      `${extra} MB at peak, largest tensor ${(r.largest_tensor_bytes / MB).toFixed(0)} MB`,
  );
}
