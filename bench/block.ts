/**
 * Benchmark: forward + backward of one transformer block (Llama style: RMSNorm, RoPE, GQA
 * attention, SwiGLU) through the real model code, and training tokens/s of whole presets.
 * Prints JSON lines when run standalone (`deno run -A bench/block.ts`).
 * @module
 */
import { backward } from "../kernels/autograd.ts";
import { type Backend, createBackend } from "../kernels/backend.ts";
import { flopsPerToken, type ModelConfig, presetConfig } from "../models/config.ts";
import { Transformer } from "../models/transformer.ts";

/** One benchmark result line. */
export interface BlockBenchRecord {
  op: "block_fwd_bwd" | "train_step";
  shape: string;
  ms: number;
  gflops: number;
  tokens_per_s: number;
  backend: string;
  adapter: string;
}

async function timeStep(
  be: Backend,
  model: Transformer,
  B: number,
  T: number,
  reps: number,
): Promise<number> {
  const V = model.config.vocab_size;
  const ids = be.fromArray(Array.from({ length: B * T }, (_, i) => (i * 7919) % V), [B, T], "i32");
  const run = async () => {
    const loss = model.loss(ids, ids);
    backward(loss);
    await loss.toArray(); // one readback per step, as a logging trainer does
    loss.dispose();
    for (const p of model.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  };
  await run(); // warm-up: pipelines compile
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) await run();
  ids.dispose();
  return (performance.now() - t0) / reps;
}

/** Forward+backward of one block (a 1-layer model) and of the given presets. */
export async function benchBlock(
  opts: { backend?: Backend; B?: number; T?: number; reps?: number; presets?: ("tiny" | "small")[] } = {},
): Promise<BlockBenchRecord[]> {
  const be = opts.backend ?? await createBackend("auto");
  const B = opts.B ?? 4, T = opts.T ?? 128, reps = opts.reps ?? 3;
  const out: BlockBenchRecord[] = [];
  const cases: [BlockBenchRecord["op"], string, ModelConfig][] = [
    [
      "block_fwd_bwd",
      "block C=256 H=8 Hkv=4 I=768",
      presetConfig("tiny", {
        hidden_size: 256,
        num_attention_heads: 8,
        num_key_value_heads: 4,
        head_dim: 32,
        intermediate_size: 768,
        num_hidden_layers: 1,
        vocab_size: 512,
        max_position_embeddings: Math.max(T, 128),
      }),
    ],
    ...(opts.presets ?? ["tiny"]).map((p) =>
      ["train_step", `preset ${p}`, presetConfig(p)] as [
        BlockBenchRecord["op"],
        string,
        ModelConfig,
      ]
    ),
  ];
  for (const [op, label, config] of cases) {
    const Tc = Math.min(T, config.max_position_embeddings);
    const model = Transformer.init(config, be, { seed: 1 });
    model.setTrainable(true);
    const ms = await timeStep(be, model, B, Tc, reps);
    model.dispose();
    const tokens = B * Tc;
    out.push({
      op,
      shape: `${label} B=${B} T=${Tc}`,
      ms: +ms.toFixed(2),
      gflops: +(flopsPerToken(config, Tc) * tokens / (ms * 1e6)).toFixed(3),
      tokens_per_s: +(tokens / (ms / 1000)).toFixed(1),
      backend: be.name,
      adapter: be.adapter,
    });
  }
  return out;
}

if (import.meta.main) {
  for (const r of await benchBlock()) console.log(JSON.stringify(r));
}
