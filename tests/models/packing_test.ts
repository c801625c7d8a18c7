/**
 * Packed rows (data/packing.ts `bfd`) train as the same examples padded one per row: the same loss
 * and the same parameter gradients, because attention stays within each example (segment ids) and
 * positions restart for each (position ids). A naive concatenation (no segments, positions running
 * on) does not. Through the Trainer's batch path (`deviceBatch`), on every backend, for a RoPE/GQA
 * model and a GPT-2 model with learned positions.
 */
import { backward, noGrad } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import { type ModelConfig, presetConfig } from "../../models/config.ts";
import { type ForwardOptions, Transformer } from "../../models/transformer.ts";
import { type PackableExample, packExamples, padExamples } from "../../data/packing.ts";
import { RowDataset } from "../../data/row_dataset.ts";
import { deviceBatch } from "../../training/_trainer_batch.ts";
import { getTrainingArgs } from "../../training/config.ts";
import { createTrainer } from "../../training/trainer.ts";
import { assert, assertAllClose, rng } from "../_assert.ts";
import { backends, cpu } from "../_check.ts";

const L = 16;
// A wider init than GPT-2's 0.02 so attention is far from uniform and context matters.
const small = {
  vocab_size: 64,
  hidden_size: 32,
  num_hidden_layers: 2,
  intermediate_size: 48,
  initializer_range: 0.1,
};
const CONFIGS: Record<string, ModelConfig> = {
  "llama (rope, GQA)": presetConfig("tiny", {
    ...small,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: L,
  }),
  "gpt2 (learned positions)": presetConfig("gpt2-124m", {
    ...small,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    max_position_embeddings: 2 * L, // room for the naive concatenation's positions
    attention_dropout: 0,
    resid_pdrop: 0,
    embd_pdrop: 0,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
  }),
};

/** Examples of skewed lengths; some with an untrained prompt (labels -100), as SFT makes them. */
function examples(): PackableExample[] {
  const r = rng(5);
  return [3, 11, 5, 7, 2, 9, 4, 6, 13, 1].map((n, e) => {
    const input_ids = Int32Array.from({ length: n }, () => 3 + Math.floor(r() * 60));
    const labels = input_ids.map((id, t) => (e % 3 === 1 && t < n / 2 ? -100 : id));
    return { input_ids, labels };
  });
}

interface Run {
  loss: number;
  grads: Map<string, Float32Array>;
}

/** Loss and gradients of every parameter for one batch (a fresh model of the same seed). */
async function lossAndGrads(
  be: Backend,
  config: ModelConfig,
  ds: RowDataset,
  tweak: (o: ForwardOptions) => ForwardOptions = (o) => o,
): Promise<Run> {
  const model = Transformer.init(config, be, { seed: 7 });
  model.setTrainable(true);
  const b = deviceBatch(ds, Uint32Array.from({ length: ds.num_blocks }, (_, i) => i), be);
  const loss = model.loss(b.ids, b.labels, tweak(b.opts));
  b.dispose(); // as the Trainer does: before the backward
  const value = (await loss.toArray())[0];
  backward(loss);
  loss.dispose();
  const grads = new Map<string, Float32Array>();
  for (const [name, p] of model.params) grads.set(name, await p.grad!.toArray() as Float32Array);
  model.dispose();
  return { loss: value, grads };
}

/**
 * Every gradient within `rel` of its tensor's largest element. A tensor whose gradient is zero in
 * exact arithmetic (the key bias: softmax ignores a shift of every score of a row) holds only float
 * noise, so the scale is at least 1% of the model's largest gradient element.
 */
function sameGrads(
  got: Map<string, Float32Array>,
  want: Map<string, Float32Array>,
  rel: number,
  msg: string,
) {
  const scale = gradScales(want);
  for (const [name, g] of want) {
    assertAllClose(got.get(name)!, g, { atol: rel * scale.get(name)!, rtol: 0, msg: `${msg} ${name}` });
  }
}

/** The scale of each gradient tensor in {@linkcode sameGrads}. */
function gradScales(want: Map<string, Float32Array>): Map<string, number> {
  let all = 0;
  for (const g of want.values()) all = Math.max(all, maxAbs(g));
  return new Map([...want].map(([name, g]) => [name, Math.max(maxAbs(g), 1e-2 * all)]));
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  return m;
}

for (const [label, config] of Object.entries(CONFIGS)) {
  Deno.test(`packed bfd rows give the loss and gradients of padded rows, a naive concatenation does not: ${label}`, async () => {
    const ex = examples();
    const packed = packExamples(ex, { max_length: L, strategy: "bfd" });
    const padded = padExamples(ex, { max_length: L });
    // the loss is a mean over trained targets: the same count on both sides, so the means compare
    assert.equal(packed.summary.trained_tokens, padded.summary.trained_tokens);
    assert.ok(packed.summary.rows < padded.summary.rows && packed.summary.rows > 1);
    const pk = new RowDataset(packed.rows, { source: "packed" });
    const pd = new RowDataset(padded.rows, { source: "padded" });
    assert.ok(pk.packed && !pd.packed);
    for (const be of await backends()) {
      const want = await lossAndGrads(be, config, pd);
      const got = await lossAndGrads(be, config, pk);
      const where = `${label} ${be.name}`;
      assert.ok(
        Math.abs(got.loss - want.loss) <= 1e-5 * Math.abs(want.loss),
        `${where}: packed loss ${got.loss}, padded ${want.loss}`,
      );
      sameGrads(got.grads, want.grads, 1e-5, `${where} grad`);
      // gradient checkpointing recomputes each block from the views the graph holds
      const ckpt = await lossAndGrads(be, config, pk, (o) => ({ ...o, gradient_checkpointing: true }));
      assert.ok(Math.abs(ckpt.loss - got.loss) <= 1e-6 * Math.abs(got.loss), `${where}: checkpointed loss`);
      sameGrads(ckpt.grads, got.grads, 1e-6, `${where} checkpointed grad`);
      // The same packed rows with attention across examples and positions running on (naive
      // concatenation), or without segment ids only: both miss the padded loss and gradients by
      // far more than the tolerance above.
      const variants: [string, ForwardOptions][] = [
        ["naive concatenation", { segment_ids: null, position_ids: null }],
        ["no segment ids", { segment_ids: null }],
      ];
      for (const [what, off] of variants) {
        const r = await lossAndGrads(be, config, pk, (o) => ({ ...o, ...off }));
        const rel = Math.abs(r.loss - want.loss) / Math.abs(want.loss);
        let worst = 0;
        const scale = gradScales(want.grads);
        for (const [name, g] of want.grads) {
          worst = Math.max(worst, maxDiff(r.grads.get(name)!, g) / scale.get(name)!);
        }
        console.log(
          `${where} ${what}: loss off by ${rel.toExponential(1)}, gradients by ${worst.toExponential(1)}`,
        );
        assert.ok(rel > 1e-3, `${where} ${what}: loss ${r.loss} should differ from ${want.loss}`);
        assert.ok(worst > 1e-2, `${where} ${what}: gradients should differ (${worst})`);
      }
    }
  });
}

Deno.test("packed rows: the logits of each example equal its logits alone", async () => {
  const config = CONFIGS["llama (rope, GQA)"];
  const ex = examples().slice(0, 4);
  const { rows } = packExamples(ex, { max_length: L });
  for (const be of await backends()) {
    const model = Transformer.init(config, be, { seed: 3 });
    const ds = new RowDataset(rows, { source: "packed" });
    const idx = Uint32Array.from(rows.keys());
    const b = deviceBatch(ds, idx, be);
    const logits = await noGrad(() => model.forward(b.ids, b.opts)).toArray();
    b.dispose();
    const V = config.vocab_size, seg = ds.segment_ids(idx);
    for (const [e, x] of ex.entries()) {
      const alone = await noGrad(() =>
        model.forward(be.fromArray(x.input_ids, [1, x.input_ids.length], "i32"))
      )
        .toArray();
      // find the example in the rows by its ids
      let at = -1;
      for (let p = 0; p + x.input_ids.length <= seg.length && at < 0; p++) {
        if (
          ds.ids.subarray(p, p + x.input_ids.length).every((v, t) => v === x.input_ids[t] && seg[p + t] > 0)
        ) {
          at = p;
        }
      }
      assert.ok(at >= 0, `example ${e} not found`);
      assertAllClose(logits.slice(at * V, (at + x.input_ids.length) * V), alone, {
        atol: 1e-5,
        rtol: 1e-4,
        msg: `${be.name} example ${e}`,
      });
    }
    model.dispose();
  }
});

Deno.test("the Trainer trains packed rows: its first loss is that of the padded rows", async () => {
  const be = await cpu();
  const config = CONFIGS["llama (rope, GQA)"];
  const ex = examples();
  const first = async (rows: ConstructorParameters<typeof RowDataset>[0], batch: number) => {
    const dir = await Deno.makeTempDir();
    try {
      const trainer = createTrainer({
        model: Transformer.init(config, be, { seed: 11 }),
        config: getTrainingArgs({
          max_steps: 2,
          per_device_train_batch_size: batch,
          learning_rate: 1e-2,
          logging_steps: 1,
          save_strategy: "no",
          gradient_checkpointing: true,
          output_dir: dir,
          overwrite_output_dir: true,
        }),
        train_dataset: new RowDataset(rows, { source: "rows" }),
        progress: false,
      });
      const result = await trainer.train();
      assert.ok(result.loss_history.every(Number.isFinite));
      return result.loss_history[0];
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  };
  const packed = packExamples(ex, { max_length: L }), padded = padExamples(ex, { max_length: L });
  const a = await first(packed.rows, packed.rows.length), b = await first(padded.rows, padded.rows.length);
  assert.ok(Math.abs(a - b) <= 1e-5 * b, `packed first loss ${a}, padded ${b}`);
});
