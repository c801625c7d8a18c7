import { join } from "node:path";
import { createBackend } from "../../kernels/backend.ts";
import { AdamW } from "../../kernels/optim.ts";
import { presetConfig } from "../../models/config.ts";
import { Transformer } from "../../models/transformer.ts";
import {
  listCheckpoints,
  loadCheckpoint,
  rotateCheckpoints,
  saveCheckpoint,
  type TrainerState,
} from "../../training/checkpoint.ts";
import { getTrainingArgs } from "../../training/config.ts";
import { createTrainer } from "../../training/trainer.ts";
import { TextDataset } from "../../data/text_dataset.ts";
import { assert } from "../_assert.ts";

const be = await createBackend("cpu");
const mc = presetConfig("tiny", {
  vocab_size: 16,
  hidden_size: 8,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 16,
  max_position_embeddings: 8,
});

function state(step: number): TrainerState {
  return {
    global_step: step,
    epoch: 0.5,
    data_position: { epoch: 0, index: 6 },
    max_steps: 10,
    rng: { seed: 1, data_seed: 2 },
    scheduler_step: step,
    best_metric: 1.5,
    best_model_checkpoint: null,
    best_step: 2,
    best_epoch: 0.25,
    early_stopping_patience_counter: 1,
    num_input_tokens_seen: 96,
    log_history: [{ step: 1, loss: 2.5 }],
  };
}

/** A model whose parameters carry gradients and an optimizer that has taken one step. */
function trained(seed: number): { model: Transformer; opt: AdamW } {
  const model = Transformer.init(mc, be, { seed });
  model.setTrainable(true);
  for (const p of model.parameters()) p.grad = be.full(p.shape, 0.01 * (seed % 7 + 1));
  const opt = new AdamW({ lr: 1e-2 });
  opt.step(model.parameters());
  opt.zeroGrad(model.parameters());
  return { model, opt };
}

Deno.test("saveCheckpoint() + loadCheckpoint() restore weights, optimizer moments, state and config exactly", async () => {
  const root = join(await Deno.makeTempDir(), "checkpoints");
  const { model, opt } = trained(3);
  const config = getTrainingArgs({ learning_rate: 3e-4, max_steps: 10 });
  const path = await saveCheckpoint(root, { model, optimizer: opt, state: state(4), config });
  assert.equal(path, join(root, "step-4"));
  const files = [...Deno.readDirSync(path)].map((e) => e.name).sort();
  for (
    const f of [
      "config.json",
      "config.yaml",
      "model.safetensors",
      "optimizer.safetensors",
      "trainer_state.json",
    ]
  ) {
    assert.ok(files.includes(f), `${f} in ${files}`);
  }

  const other = trained(5);
  const ck = await loadCheckpoint(path, { model: other.model, optimizer: other.opt });
  assert.deepEqual(ck.state, state(4));
  assert.deepEqual(ck.config, config);
  for (const [name, t] of model.params) {
    assert.deepEqual(other.model.params.get(name)!.data, t.data, name);
    assert.equal(other.model.params.get(name)!.requiresGrad, true);
  }
  const [a, b] = [await opt.state(), await other.opt.state()];
  assert.equal(b.entries.length, a.entries.length);
  for (let i = 0; i < a.entries.length; i++) {
    assert.equal(b.entries[i].name, a.entries[i].name);
    assert.equal(b.entries[i].step, 1);
    assert.deepEqual(b.entries[i].m, a.entries[i].m);
    assert.deepEqual(b.entries[i].v, a.entries[i].v);
  }
  await Deno.remove(join(root, ".."), { recursive: true });
});

Deno.test("a crash mid-write leaves no step-N/ folder, and leftovers of one are never listed", async () => {
  const root = join(await Deno.makeTempDir(), "checkpoints");
  const { model } = trained(1);
  const crashing = {
    state: () => Promise.reject(new Error("simulated crash while writing optimizer state")),
  };
  await assert.rejects(
    () => saveCheckpoint(root, { model, optimizer: crashing, state: state(6), config: getTrainingArgs() }),
    /simulated crash/,
  );
  assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), []);
  // A killed process leaves its temporary folder: it is not a checkpoint.
  await Deno.mkdir(join(root, "step-6.tmp-1234"));
  await Deno.writeTextFile(join(root, "step-6.tmp-1234", "model.safetensors"), "half");
  assert.deepEqual(await listCheckpoints(root), []);
  await Deno.remove(join(root, ".."), { recursive: true });
});

Deno.test("saveCheckpoint() replaces an existing step-N; loadCheckpoint() names a missing file", async () => {
  const root = join(await Deno.makeTempDir(), "checkpoints");
  const { model, opt } = trained(2);
  const config = getTrainingArgs();
  await saveCheckpoint(root, { model, optimizer: opt, state: state(3), config });
  const s = state(3);
  s.epoch = 0.75;
  await saveCheckpoint(root, { model, optimizer: opt, state: s, config });
  assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), ["step-3"]);
  assert.equal((await loadCheckpoint(join(root, "step-3"))).state.epoch, 0.75);
  await Deno.remove(join(root, "step-3", "optimizer.safetensors"));
  await assert.rejects(
    () => loadCheckpoint(join(root, "step-3")),
    (e: Error) => e instanceof Deno.errors.NotFound && /optimizer\.safetensors is missing/.test(e.message),
  );
  await Deno.remove(join(root, ".."), { recursive: true });
});

Deno.test("rotateCheckpoints() keeps the newest save_total_limit folders, and always the best", async () => {
  const root = await Deno.makeTempDir();
  for (const n of [2, 4, 6, 8, 10]) await Deno.mkdir(join(root, `step-${n}`));
  const names = async () => (await listCheckpoints(root)).map((p) => p.slice(root.length + 1));
  assert.deepEqual(await names(), ["step-2", "step-4", "step-6", "step-8", "step-10"]);
  assert.deepEqual(await rotateCheckpoints(root, { save_total_limit: null }), []);
  await rotateCheckpoints(root, { save_total_limit: 3, keep: join(root, "step-4") });
  assert.deepEqual(await names(), ["step-4", "step-8", "step-10"]);
  await rotateCheckpoints(root, { save_total_limit: 1, keep: join(root, "step-4") });
  assert.deepEqual(await names(), ["step-4", "step-10"]);
  await rotateCheckpoints(root, { save_total_limit: 1 });
  assert.deepEqual(await names(), ["step-10"]);
  await Deno.remove(root, { recursive: true });
});

Deno.test("a trainer that loses the lock of a new output_dir leaves the folder to the run that holds it", async () => {
  const be = await createBackend("cpu");
  const root = await Deno.makeTempDir(), out = join(root, "run");
  const mk = () =>
    createTrainer({
      model: Transformer.init(
        presetConfig("tiny", {
          vocab_size: 16,
          hidden_size: 16,
          num_hidden_layers: 1,
          num_attention_heads: 2,
          intermediate_size: 32,
          max_position_embeddings: 8,
        }),
        be,
      ),
      config: getTrainingArgs({
        output_dir: out,
        max_steps: 20,
        per_device_train_batch_size: 2,
        save_steps: 10,
      }),
      train_dataset: new TextDataset(Int32Array.from({ length: 64 }, (_, i) => (i * 7) % 16), {
        block_size: 8,
      }),
      progress: false,
      handle_signals: false,
    });
  const a = mk(), b = mk();
  try {
    const [ra, rb] = await Promise.allSettled([a.train(), b.train()]);
    // one of them wins the lock; the other's failed start once removed the folder under the winner
    const won = [ra, rb].filter((r) => r.status === "fulfilled");
    const lost = [ra, rb].filter((r) => r.status === "rejected") as PromiseRejectedResult[];
    assert.equal(won.length, 1, String(lost.map((r) => r.reason)));
    assert.match(String(lost[0].reason), /Busy|in use/);
    assert.ok((await Deno.stat(join(out, "model", "model.safetensors"))).isFile);
  } finally {
    a.dispose();
    b.dispose();
    await Deno.remove(root, { recursive: true });
  }
});
