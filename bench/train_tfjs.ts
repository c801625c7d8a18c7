/**
 * Training throughput: fledge vs tfjs-webgpu on the same adapter, for the `tiny` and `small`
 * presets (same shapes, same B and T). JSON lines on stdout
 * (`{"op":"train_step","model":"tiny","impl":"tfjs-webgpu","tokens_per_s":...}`), a table on stderr.
 *
 * - `fledge-webgpu`: `benchBlock`'s train_step (loss + backward through the real model, one loss
 *   readback per step; no optimizer update).
 * - `fledge-webgpu+adamw`: the same plus an `AdamW.step` over every parameter (the full step).
 * - `tfjs-webgpu`: the same decoder written with tfjs ops (token embedding tied to the LM head,
 *   RMSNorm, RoPE, causal softmax attention with grouped kv heads, SwiGLU MLP, softmax
 *   cross-entropy), gradients by `tf.variableGrads`, update by `tf.train.adam`, one loss readback per
 *   step. tfjs is a bench-only dependency (`npm:@tensorflow/tfjs-core@^4.22`,
 *   `npm:@tensorflow/tfjs-backend-webgpu@^4.22`), loaded lazily as in `bench/matmul.ts`.
 *
 * Timing: one warm-up step (pipeline compiles), then the mean over `reps` steps.
 *
 * Run: `deno run -A bench/train_tfjs.ts [--models tiny,small] [--B 4] [--T 128] [--reps 2] [--no-tfjs]
 * [--no-ours]`
 *
 * @module
 */
import { parseFlags } from "../util/flags.ts";
import { backward } from "../kernels/autograd.ts";
import { type Backend, createBackend } from "../kernels/backend.ts";
import { AdamW } from "../kernels/optim.ts";
import { type ModelConfig, presetConfig } from "../models/config.ts";
import { Transformer } from "../models/transformer.ts";
import { benchBlock } from "./block.ts";

/** Presets this benchmark knows. */
export type TrainBenchModel = "tiny" | "small";

/** One result line. */
export interface TrainTfjsRecord {
  op: "train_step";
  model: TrainBenchModel;
  impl: "fledge-webgpu" | "fledge-webgpu+adamw" | "tfjs-webgpu";
  shape: string;
  ms: number;
  tokens_per_s: number;
  backend: string;
  adapter: string;
  /** Loss of the last step (a sanity check that both sides train the same model). */
  loss?: number;
  note?: string;
}

/** Options of {@linkcode benchTrainTfjs}. */
export interface TrainTfjsOptions {
  /** Presets to train (default `["tiny", "small"]`). */
  models?: TrainBenchModel[];
  /** Batch size (default 4, as `benchBlock`). */
  B?: number;
  /** Sequence length (default 128, as `benchBlock`; capped at the preset's max positions). */
  T?: number;
  /** Timed steps after the warm-up (default 2). */
  reps?: number;
  /** Run fledge (default true). */
  ours?: boolean;
  /** Run tfjs-webgpu (default true). */
  tfjs?: boolean;
  /** Each record as it is measured (default: print a JSON line). */
  onRecord?: (r: TrainTfjsRecord) => void;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

// ---- tfjs: a minimal view of the API used (bench-only dependency) ----

type T = { shape: number[]; dispose(): void; data(): Promise<ArrayLike<number>> };
type V = T & { name: string };
interface Tf {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  backend(): { adapterInfo?: { description?: string } };
  variable(x: T, trainable?: boolean, name?: string): V;
  randomNormal(shape: number[], mean?: number, std?: number, dtype?: "float32", seed?: number): T;
  ones(shape: number[]): T;
  tensor(values: ArrayLike<number>, shape: number[], dtype?: "float32" | "int32"): T;
  gather(x: T, indices: T): T;
  matMul(a: T, b: T, transposeA?: boolean, transposeB?: boolean): T;
  reshape(x: T, shape: number[]): T;
  transpose(x: T, perm: number[]): T;
  slice(x: T, begin: number[], size: number[]): T;
  concat(xs: T[], axis: number): T;
  tile(x: T, reps: number[]): T;
  add(a: T, b: T): T;
  sub(a: T, b: T): T;
  mul(a: T | number, b: T | number): T;
  neg(x: T): T;
  mean(x: T, axis?: number, keepDims?: boolean): T;
  rsqrt(x: T): T;
  square(x: T): T;
  sigmoid(x: T): T;
  softmax(x: T): T;
  oneHot(indices: T, depth: number): T;
  losses: { softmaxCrossEntropy(onehot: T, logits: T): T };
  variableGrads(f: () => T): { value: T; grads: Record<string, T> };
  train: { adam(lr: number): { applyGradients(g: Record<string, T>): void; dispose(): void } };
  dispose(x: T | T[]): void;
  memory(): { numTensors: number };
}

async function loadTfjs(): Promise<Tf> {
  // tfjs-core alone registers no gradients (its `dist/register_all_gradients.js` uses extensionless
  // ESM imports that neither Deno nor Node resolve); the `@tensorflow/tfjs` bundle registers them
  // and re-exports the same tfjs-core.
  const tf = await import("npm:@tensorflow/tfjs@^4.22") as unknown as Tf;
  await import("npm:@tensorflow/tfjs-backend-webgpu@^4.22");
  if (!(await tf.setBackend("webgpu"))) throw new Error("tf.setBackend('webgpu') returned false");
  await tf.ready();
  return tf;
}

/** Token ids of the benchmark (the same pattern as `benchBlock`). */
function tokenIds(B: number, T: number, V: number): Int32Array {
  return Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % V);
}

/**
 * One tfjs training step of the decoder described by `c` (Llama style as the presets: RMSNorm,
 * RoPE rotate-half, GQA, SwiGLU, tied embeddings). Returns the step function and a cleanup.
 */
function tfjsTrainer(tf: Tf, c: ModelConfig, B: number, T: number) {
  const C = c.hidden_size, H = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
  const I = c.intermediate_size, V = c.vocab_size, G = H / Hkv;
  let seed = 1;
  const vars: V[] = [];
  const w = (shape: number[], name: string) => {
    const v = tf.variable(tf.randomNormal(shape, 0, c.initializer_range, "float32", seed++), true, name);
    vars.push(v);
    return v;
  };
  const ones = (n: number, name: string) => {
    const v = tf.variable(tf.ones([n]), true, name);
    vars.push(v);
    return v;
  };
  const emb = w([V, C], "emb");
  const layers = Array.from({ length: c.num_hidden_layers }, (_, l) => ({
    n1: ones(C, `l${l}.n1`),
    wq: w([C, H * D], `l${l}.wq`),
    wk: w([C, Hkv * D], `l${l}.wk`),
    wv: w([C, Hkv * D], `l${l}.wv`),
    wo: w([H * D, C], `l${l}.wo`),
    n2: ones(C, `l${l}.n2`),
    wg: w([C, I], `l${l}.wg`),
    wu: w([C, I], `l${l}.wu`),
    wd: w([I, C], `l${l}.wd`),
  }));
  const nf = ones(C, "norm");
  // Constants: ids, next-token labels (one-hot), rope tables, the additive causal mask.
  const ids = tokenIds(B, T, V);
  const labels = Int32Array.from(ids, (_, i) => ids[(i % T === T - 1) ? i : i + 1]);
  const idsT = tf.tensor(ids, [B * T], "int32");
  const labelsT = tf.tensor(labels, [B * T], "int32");
  const onehot = tf.oneHot(labelsT, V);
  const half = D / 2, cos = new Float32Array(T * D), sin = new Float32Array(T * D);
  for (let t = 0; t < T; t++) {
    for (let d = 0; d < D; d++) {
      const f = t / Math.pow(c.rope_theta, (2 * (d % half)) / D);
      cos[t * D + d] = Math.cos(f);
      sin[t * D + d] = Math.sin(f);
    }
  }
  const cosT = tf.tensor(cos, [T, D]), sinT = tf.tensor(sin, [T, D]);
  const maskArr = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) maskArr[i * T + j] = -1e9;
  const mask = tf.tensor(maskArr, [T, T]);
  const consts = [idsT, labelsT, onehot, cosT, sinT, mask];

  const rms = (x: T, g: T) =>
    tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), tf.tensor([c.norm_eps], [1])))), g);
  const heads = (x: T, n: number) => tf.transpose(tf.reshape(x, [B, T, n, D]), [0, 2, 1, 3]);
  const rope = (x: T) => {
    const x1 = tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, half]);
    const x2 = tf.slice(x, [0, 0, 0, half], [-1, -1, -1, half]);
    return tf.add(tf.mul(x, cosT), tf.mul(tf.concat([tf.neg(x2), x1], -1), sinT));
  };
  const repeatKv = (x: T) =>
    G === 1 ? x : tf.reshape(tf.tile(tf.reshape(x, [B, Hkv, 1, T, D]), [1, 1, G, 1, 1]), [B, H, T, D]);
  const scale = 1 / Math.sqrt(D);
  const loss = () => {
    let x = tf.gather(emb, idsT);
    for (const L of layers) {
      const h = rms(x, L.n1);
      const q = rope(heads(tf.matMul(h, L.wq), H));
      const k = repeatKv(rope(heads(tf.matMul(h, L.wk), Hkv)));
      const v = repeatKv(heads(tf.matMul(h, L.wv), Hkv));
      const p = tf.softmax(tf.add(tf.mul(tf.matMul(q, k, false, true), scale), mask));
      const a = tf.reshape(tf.transpose(tf.matMul(p, v), [0, 2, 1, 3]), [B * T, H * D]);
      x = tf.add(x, tf.matMul(a, L.wo));
      const h2 = rms(x, L.n2);
      const g = tf.matMul(h2, L.wg);
      x = tf.add(x, tf.matMul(tf.mul(tf.mul(g, tf.sigmoid(g)), tf.matMul(h2, L.wu)), L.wd));
    }
    const logits = tf.matMul(rms(x, nf), emb, false, true);
    return tf.losses.softmaxCrossEntropy(onehot, logits);
  };
  const opt = tf.train.adam(1e-3);
  const state = { loss: NaN };
  const step = async () => {
    const { value, grads } = tf.variableGrads(loss);
    opt.applyGradients(grads);
    state.loss = (await value.data())[0]; // one readback per step, as a logging trainer does
    tf.dispose([value, ...Object.values(grads)]);
  };
  const dispose = () => {
    opt.dispose();
    tf.dispose([...vars, ...consts]);
  };
  return { step, dispose, state };
}

/** Mean ms per step over `reps` after one warm-up. */
async function timeSteps(reps: number, step: () => Promise<void>): Promise<number> {
  await step();
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) await step();
  return (performance.now() - t0) / reps;
}

/** fledge's full step: loss, backward, AdamW over every parameter, one loss readback. */
async function oursWithAdam(be: Backend, c: ModelConfig, B: number, T: number, reps: number) {
  const model = Transformer.init(c, be, { seed: 1 });
  model.setTrainable(true);
  const params = model.parameters();
  const opt = new AdamW({ lr: 1e-3 });
  const ids = be.fromArray(tokenIds(B, T, c.vocab_size), [B, T], "i32");
  let last = NaN;
  try {
    const ms = await timeSteps(reps, async () => {
      const loss = model.loss(ids, ids);
      backward(loss);
      opt.step(params);
      last = (await loss.toArray())[0];
      loss.dispose();
      for (const p of params) {
        p.grad?.dispose();
        p.grad = null;
      }
    });
    return { ms, loss: last };
  } finally {
    ids.dispose();
    model.dispose();
  }
}

/**
 * Train the presets with fledge and with tfjs-webgpu on the same adapter and return tokens/s
 * records (tfjs failures become records with `tokens_per_s: NaN` and a `note`).
 *
 * @example
 * ```ts ignore
 * const recs = await benchTrainTfjs({ models: ["tiny"], reps: 1 });
 * console.log(recs.map((r) => `${r.impl} ${r.tokens_per_s}`).join("\n"));
 * ```
 */
export async function benchTrainTfjs(opts: TrainTfjsOptions = {}): Promise<TrainTfjsRecord[]> {
  const log = opts.log ?? ((s: string) => console.error(s));
  const emit = opts.onRecord ?? ((r: TrainTfjsRecord) => console.log(JSON.stringify(r)));
  const models = opts.models ?? ["tiny", "small"];
  const B = opts.B ?? 4, reps = opts.reps ?? 2;
  const out: TrainTfjsRecord[] = [];
  const push = (r: TrainTfjsRecord) => {
    out.push(r);
    emit(r);
  };
  const shapeOf = (m: TrainBenchModel) => {
    const c = presetConfig(m);
    const T = Math.min(opts.T ?? 128, c.max_position_embeddings);
    return { c, T, shape: `preset ${m} B=${B} T=${T}` };
  };
  if (opts.ours ?? true) {
    const be = await createBackend("webgpu");
    for (const m of models) {
      const { c, T, shape } = shapeOf(m);
      log(`fledge ${shape} ...`);
      const [rec] = await benchBlock({ backend: be, B, T, reps, presets: [m] }).then((rs) =>
        rs.filter((r) => r.op === "train_step")
      );
      push({
        op: "train_step",
        model: m,
        impl: "fledge-webgpu",
        shape,
        ms: rec.ms,
        tokens_per_s: rec.tokens_per_s,
        backend: "webgpu",
        adapter: be.adapter,
        note: "benchBlock: loss + backward, no optimizer update",
      });
      const { ms, loss } = await oursWithAdam(be, c, B, T, reps);
      push({
        op: "train_step",
        model: m,
        impl: "fledge-webgpu+adamw",
        shape,
        ms: +ms.toFixed(2),
        tokens_per_s: +(B * T / (ms / 1000)).toFixed(1),
        backend: "webgpu",
        adapter: be.adapter,
        loss: +loss.toFixed(4),
      });
    }
    be.destroy();
  }
  if (opts.tfjs ?? true) {
    let tf: Tf | null = null;
    let why = "";
    try {
      tf = await loadTfjs();
    } catch (e) {
      why = `tfjs-webgpu did not start under Deno: ${(e as Error).message}`;
      log(why);
    }
    const adapter = tf?.backend().adapterInfo?.description ||
      (await navigator.gpu?.requestAdapter())?.info.description || "unknown";
    for (const m of models) {
      const { c, T, shape } = shapeOf(m);
      const base = { op: "train_step" as const, model: m, impl: "tfjs-webgpu" as const, shape };
      if (!tf) {
        push({ ...base, ms: NaN, tokens_per_s: NaN, backend: "tfjs-webgpu", adapter: "none", note: why });
        continue;
      }
      log(`tfjs ${shape} ...`);
      const trainer = tfjsTrainer(tf, c, B, T);
      try {
        const ms = await timeSteps(reps, trainer.step);
        push({
          ...base,
          ms: +ms.toFixed(2),
          tokens_per_s: +(B * T / (ms / 1000)).toFixed(1),
          backend: "tfjs-webgpu",
          adapter,
          loss: +trainer.state.loss.toFixed(4),
        });
      } catch (e) {
        const note = `tfjs step failed: ${(e as Error).message}`;
        log(note);
        push({ ...base, ms: NaN, tokens_per_s: NaN, backend: "tfjs-webgpu", adapter, note });
      } finally {
        trainer.dispose();
      }
    }
  }
  return out;
}

/** The records as a table: tokens/s per model and implementation, and fledge's speedup over tfjs. */
export function trainTable(records: TrainTfjsRecord[]): string {
  const impls = [...new Set(records.map((r) => r.impl))];
  const models = [...new Set(records.map((r) => r.model))];
  const head = ["model", ...impls.map((i) => `${i} tok/s`), "benchBlock/tfjs", "full step/tfjs"];
  const rows = models.map((m) => {
    const get = (i: string) => records.find((r) => r.model === m && r.impl === i)?.tokens_per_s ?? NaN;
    const tf = get("tfjs-webgpu");
    const ratio = (
      x: number,
    ) => (Number.isFinite(tf) && Number.isFinite(x) ? `${(x / tf).toFixed(2)}x` : "-");
    return [
      m,
      ...impls.map((i) => (Number.isFinite(get(i)) ? String(get(i)) : "-")),
      ratio(get("fledge-webgpu")),
      ratio(get("fledge-webgpu+adamw")),
    ];
  });
  const all = [head, ...rows];
  const wd = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all.map((r) => r.map((c, i) => c.padStart(wd[i])).join("  ")).join("\n");
}

if (import.meta.main) {
  const values = parseFlags("bench", Deno.args, {
    models: { type: "string" },
    B: { type: "int", min: 1 },
    T: { type: "int", min: 1 },
    reps: { type: "int", min: 1 },
    no_tfjs: { type: "boolean" },
    no_ours: { type: "boolean" },
  });
  const recs = await benchTrainTfjs({
    models: values.models?.split(",") as TrainBenchModel[] | undefined,
    B: values.B,
    T: values.T,
    reps: values.reps,
    tfjs: !values.no_tfjs,
    ours: !values.no_ours,
  });
  console.error("\n" + trainTable(recs));
}
