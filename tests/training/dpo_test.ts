import { join } from "node:path";
import { type Backend, createBackend } from "../../kernels/backend.ts";
import { noGrad } from "../../kernels/autograd.ts";
import { presetConfig } from "../../models/config.ts";
import { Transformer } from "../../models/transformer.ts";
import { saveModel } from "../../models/save.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { buildPreferenceExamples, PreferenceDataset, type PreferenceExample } from "../../data/preference.ts";
import { readJsonl } from "../../data/jsonl.ts";
import { buildSftExamples } from "../../data/sft.ts";
import { packExamples, padExamples } from "../../data/packing.ts";
import { RowDataset } from "../../data/row_dataset.ts";
import type { DataRecord } from "../../data/readers.ts";
import { createTrainer } from "../../training/trainer.ts";
import { getTrainingArgs } from "../../training/config.ts";
import { runTraining } from "../../training/run.ts";
import { createDpoTrainer, dpoLoss, precomputeRefLogProbs, runDpo } from "../../training/dpo.ts";
import type { TrainDataset } from "../../training/_trainer_batch.ts";
import { assert, assertClose, SHARED, SLOW } from "../_assert.ts";
import { backends, cpu } from "../_check.ts";

const mc = presetConfig("tiny", {
  vocab_size: 32,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 32,
  max_position_embeddings: 16,
});

/** A pair from token lists: prompt p, chosen c, rejected r. */
function pair(p: number[], c: number[], r: number[], source = "p"): PreferenceExample {
  const seq = (x: number[]) => Int32Array.from([...p, ...x]);
  const lab = (x: number[]) => Int32Array.from([...p.map(() => -100), ...x]);
  return {
    chosen_input_ids: seq(c),
    chosen_labels: lab(c),
    rejected_input_ids: seq(r),
    rejected_labels: lab(r),
    source,
  };
}

/** Pairs of different prompt and completion lengths (padding in every batch). */
const PAIRS = [
  pair([1, 2, 3], [4, 5], [6]),
  pair([7], [8, 9, 10, 11], [12, 13]),
  pair([14, 15, 16, 17], [18], [19, 20, 21]),
  pair([22, 23], [24, 25, 26], [27, 28, 29, 30]),
];
const dataset = () => new PreferenceDataset(PAIRS, { pad_token_id: 0, source: "pairs" });

Deno.test("PreferenceDataset holds 150,000 pairs (a spread Math.max of every sequence had overflowed the stack)", () => {
  const one = pair([1, 2], [3], [4, 5]);
  const d = new PreferenceDataset(Array.from({ length: 150_000 }, () => one), {
    pad_token_id: 0,
    source: "big",
  });
  assert.deepEqual([d.num_blocks, d.block_size], [150_000, 4]);
});

async function dpoRun(
  be: Backend,
  overrides: Record<string, unknown>,
  opts: { model?: Transformer; eval?: boolean } = {},
) {
  const dir = await Deno.makeTempDir();
  const model = opts.model ?? Transformer.init(mc, be, { seed: 5 });
  const logs: Record<string, number>[] = [];
  const trainer = await createDpoTrainer({
    model,
    config: getTrainingArgs({
      output_dir: dir,
      max_steps: 2,
      per_device_train_batch_size: 2,
      learning_rate: 1e-2,
      logging_steps: 1,
      save_strategy: "no",
      ...(opts.eval ? { eval_strategy: "steps" as const, eval_steps: 1 } : {}),
      ...overrides,
    }),
    train_dataset: dataset(),
    eval_dataset: opts.eval ? dataset() : null,
    progress: false,
    log: () => {},
    hooks: { on_log: (_c, rec) => void logs.push(rec), on_evaluate: (_c, rec) => void logs.push(rec) },
  });
  const result = await trainer.train();
  trainer.dispose();
  await Deno.remove(dir, { recursive: true });
  return { result, logs, model };
}

const REWARDS = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"];
const LOGGED = [...REWARDS, "logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected"];

for (const be of await backends()) {
  Deno.test(`DPO with a zero-initialised LoRA starts at loss ln 2 with every reward 0, then learns (${be.name})`, async () => {
    const { logs } = await dpoRun(be, { lora: { r: 4, lora_alpha: 8 }, max_steps: 3 }, {
      eval: true,
    });
    const first = logs[0];
    assert.equal(first.step, 1);
    assertClose(first.loss, Math.LN2, { atol: 1e-6, msg: "first loss" });
    for (const k of REWARDS) assert.equal(first[k], 0, k);
    for (const k of LOGGED) assert.ok(Number.isFinite(first[k]), `${k} logged`);
    assert.ok(first["logps/chosen"] < 0 && first["logps/rejected"] < 0);
    const evals = logs.filter((r) => "eval_loss" in r), trains = logs.filter((r) => "loss" in r);
    for (const k of LOGGED) assert.ok(Number.isFinite(evals[0][`eval_${k}`]), `eval_${k} logged`);
    assert.ok(trains.at(-1)!.loss < Math.LN2, `the loss falls: ${trains.map((r) => r.loss)}`);
    assert.ok(evals.at(-1)!["eval_rewards/margins"] > 0, "chosen rewards rise above rejected");
  });
}

Deno.test("DPO with NEFTune (neftune_noise_alpha) noises the policy only: a zero-initialised LoRA no longer starts at ln 2", async () => {
  const be = await cpu(), lora = { r: 4, lora_alpha: 8 };
  const plain = await dpoRun(be, { lora, max_steps: 1 });
  const noisy = await dpoRun(be, { lora, max_steps: 1, neftune_noise_alpha: 5 });
  assertClose(plain.logs[0].loss, Math.LN2, { atol: 1e-6, msg: "without noise, policy = reference" });
  // with disable_dropout (the default) too: the noise is not a dropout, and the reference sees none
  assert.ok(Math.abs(noisy.logs[0].loss - Math.LN2) > 1e-4, `noisy first loss ${noisy.logs[0].loss}`);
  assert.notEqual(noisy.logs[0]["rewards/chosen"], 0);
  for (const r of [plain, noisy]) r.model.dispose();
});

Deno.test("DPO's first loss is the value of each loss type at zero log-ratios (hinge 1, ipo 1/(4 beta^2))", async () => {
  const be = await cpu();
  for (const [type, want] of [["hinge", 1], ["ipo", 1 / (4 * 0.5 ** 2)], ["sigmoid", Math.LN2]] as const) {
    const { logs } = await dpoRun(be, { lora: { r: 2 }, loss_type: type, beta: 0.5, max_steps: 1 });
    assertClose(logs[0].loss, want, { atol: 1e-5, msg: type });
  }
});

/** Host log-probs of one sequence's completion under `model` (its own forward, no padding). */
async function hostLogProbs(model: Transformer, ids: Int32Array, labels: Int32Array): Promise<number> {
  const be = model.backend, T = ids.length, V = mc.vocab_size;
  const logits = await noGrad(() => model.forward(be.fromArray(ids, [1, T], "i32"))).toArray();
  let s = 0;
  for (let t = 1; t < T; t++) {
    if (labels[t] === -100) continue;
    const row = Array.from(logits.subarray((t - 1) * V, t * V));
    const m = Math.max(...row), lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
    s += row[ids[t]] - lse;
  }
  return s;
}

Deno.test("dpoLoss() equals hand-computed sigmoid / hinge / ipo losses and statistics on a padded batch of two pairs", async () => {
  for (const be of await backends()) {
    const model = Transformer.init(mc, be, { seed: 9 });
    const ds = dataset();
    const idx = Uint32Array.of(1, 2);
    const lp: number[] = [];
    for (const side of ["chosen", "rejected"] as const) {
      for (const i of idx) {
        lp.push(await hostLogProbs(model, PAIRS[i][`${side}_input_ids`], PAIRS[i][`${side}_labels`]));
      }
    }
    // References chosen so that the log-ratios are pair 0: dc = 1, dr = -1; pair 1: dc = -0.5, dr = 0.5.
    const d = [1, -0.5, -1, 0.5];
    const ref = new Float32Array(8);
    [...idx].forEach((i, r) => {
      ref[2 * i] = lp[r] - d[r];
      ref[2 * i + 1] = lp[2 + r] - d[2 + r];
    });
    const refs = new Map<TrainDataset, Float32Array>([[ds, ref]]);
    const run = (config: Parameters<typeof dpoLoss>[0]) =>
      noGrad(() =>
        dpoLoss(config, { ref_log_probs: refs })(model, idx, { dataset: ds, training: false, forward: {} })
      );
    const read = async (
      t: { loss: unknown; metrics?: Record<string, { toArray(): Promise<ArrayLike<number>> }> },
    ) => {
      const out: Record<string, number> = {
        loss: (await (t.loss as { toArray(): Promise<ArrayLike<number>> }).toArray())[0],
      };
      for (const [k, v] of Object.entries(t.metrics ?? {})) out[k] = (await v.toArray())[0];
      return out;
    };
    const base = { label_smoothing: 0, disable_dropout: true };
    // hinge, beta 0.25: z = 0.5 -> 0.5; z = -0.25 -> 1.25.
    const hinge = await read(run({ ...base, loss_type: "hinge", beta: 0.25 }));
    assertClose(hinge.loss, 0.875, { atol: 1e-5, msg: `${be.name} hinge` });
    // ipo, beta 0.5, completion lengths: pair 1 (chosen 4, rejected 2), pair 2 (1, 3):
    // u = 1/4 + 1/2 - 1 = -0.25 -> 0.0625; u = -0.5 - 0.5/3 - 1 -> (5/3)^2.
    const ipo = await read(run({ ...base, loss_type: "ipo", beta: 0.5 }));
    assertClose(ipo.loss, (0.0625 + (5 / 3) ** 2) / 2, { atol: 1e-5, msg: `${be.name} ipo` });
    // sigmoid with cDPO smoothing 0.1, beta 0.5: z = 1, z = -0.5.
    const sp = (x: number) => Math.log1p(Math.exp(x));
    const sig = await read(run({ ...base, loss_type: "sigmoid", beta: 0.5, label_smoothing: 0.1 }));
    const want = (0.9 * sp(-1) + 0.1 * sp(1) + 0.9 * sp(0.5) + 0.1 * sp(-0.5)) / 2;
    assertClose(sig.loss, want, { atol: 1e-5, msg: `${be.name} sigmoid` });
    const stats: Record<string, number> = {
      "rewards/chosen": 0.125,
      "rewards/rejected": -0.125,
      "rewards/accuracies": 0.5,
      "rewards/margins": 0.25,
      "logps/chosen": (lp[0] + lp[1]) / 2,
      "logps/rejected": (lp[2] + lp[3]) / 2,
    };
    for (const [k, v] of Object.entries(stats)) {
      assertClose(sig[k], v, { atol: 2e-5, msg: `${be.name} ${k}` });
    }
    assert.ok(Number.isFinite(sig["logits/chosen"]) && sig["logits/chosen"] !== sig["logits/rejected"]);
    model.dispose();
  }
});

Deno.test("precompute_ref_log_probs gives the per-batch reference's numbers, for LoRA and for full fine-tuning (a frozen copy)", async () => {
  const be = await cpu();
  const lora = { lora: { r: 4 } };
  const live = await dpoRun(be, { ...lora, max_steps: 3 }, { eval: true });
  const pre = await dpoRun(be, { ...lora, max_steps: 3, precompute_ref_log_probs: true }, { eval: true });
  for (let i = 0; i < live.logs.length; i++) {
    for (const k of ["loss", "eval_loss", "rewards/margins", "eval_rewards/margins"]) {
      if (k in live.logs[i]) {
        assertClose(pre.logs[i][k], live.logs[i][k], { atol: 1e-5, rtol: 1e-4, msg: `${k} @${i}` });
      }
    }
  }
  // Full fine-tuning: the reference is a frozen copy of the starting weights (TRL's
  // create_reference_model; it had been refused without precompute_ref_log_probs), asked per batch
  const fullOpts = { learning_rate: 1e-3, max_steps: 3 };
  const copied = await dpoRun(be, fullOpts, { eval: true });
  const once = await dpoRun(be, { ...fullOpts, precompute_ref_log_probs: true }, { eval: true });
  assertClose(copied.logs[0].loss, Math.LN2, { atol: 1e-6, msg: "full fine-tuning starts at the reference" });
  assert.equal(copied.logs.length, once.logs.length);
  for (let i = 0; i < copied.logs.length; i++) {
    for (const k of ["loss", "eval_loss", "rewards/margins", "eval_rewards/margins", "logps/chosen"]) {
      if (k in copied.logs[i]) {
        assertClose(copied.logs[i][k], once.logs[i][k], { atol: 1e-5, rtol: 1e-4, msg: `full ${k} @${i}` });
      }
    }
  }
  assert.ok(
    copied.logs.filter((r) => "loss" in r).at(-1)!["rewards/margins"] > 0,
    "the policy moved, the copy not",
  );
  // TRL's ref_model: given with an adapter (refused, as TRL), or reading other ids
  const other = Transformer.init({ ...mc, vocab_size: 40 }, be, { seed: 1 });
  const refOpts = (lora: Record<string, unknown>, ref_model: Transformer) => ({
    model: Transformer.init(mc, be, { seed: 5 }),
    config: getTrainingArgs({ output_dir: "unused", max_steps: 1, save_strategy: "no", ...lora }),
    train_dataset: dataset(),
    ref_model,
    progress: false,
  });
  await assert.rejects(
    () => createDpoTrainer(refOpts({ lora: { r: 4 } }, Transformer.init(mc, be))),
    /Cannot train DPO: a ref_model was given with an adapter, .* drop ref_model$/,
  );
  await assert.rejects(
    () => createDpoTrainer(refOpts({}, other)),
    /ref_model must read the policy's token ids on its backend \(vocab_size 40 on cpu, the policy's 32 on cpu\)/,
  );
  other.dispose();
  const policy = Transformer.init(mc, be, { seed: 5 });
  await assert.rejects(
    () => createDpoTrainer({ ...refOpts({}, policy), model: policy }),
    /ref_model shares its weights with the policy, so it would move with it/,
  );
  policy.dispose();
  const notes: string[] = [];
  const t = await createDpoTrainer({
    ...refOpts({}, null!),
    ref_model: undefined,
    log: (l) => void notes.push(l),
  });
  t.dispose();
  assert.deepEqual(notes, [
    "DPO reference: a frozen copy of the weights (22.8 kB), as TRL's create_reference_model (precompute_ref_log_probs: true needs none)",
  ]);
  // the copy is static memory in the Trainer's report, not "activations"
  const memo: string[] = [];
  const out = await Deno.makeTempDir();
  const t2 = await createDpoTrainer({
    ...refOpts({}, null!),
    config: getTrainingArgs({ output_dir: out, max_steps: 1, save_strategy: "no" }),
    ref_model: undefined,
    log: (l) => void memo.push(l),
  });
  await t2.train();
  t2.dispose();
  await Deno.remove(out, { recursive: true });
  assert.ok(
    memo.some((l) =>
      /gradients 22\.8 kB, optimizer state 45\.7 kB, reference copy 22\.8 kB;.* Static 114\.2 kB/.test(l)
    ),
    memo.join("\n"),
  );
  const withBias = Transformer.init(presetConfig("tiny", { ...mc, qkv_bias: true, o_bias: true }), be, {
    seed: 5,
  });
  await assert.rejects(
    () => dpoRun(be, { lora: { r: 4, bias: "all" } }, { model: withBias }),
    /adapter trains model weights \(lora bias or modules_to_save\)/,
  );
  // LoRA dropout that disable_dropout (TRL's default) turns off: refused, not ignored
  await assert.rejects(
    () => dpoRun(be, { lora: { r: 4, lora_dropout: 0.1 } }),
    /lora\.lora_dropout 0\.1 would not be used, as disable_dropout .* turns every dropout off/,
  );
  const full = await dpoRun(be, { precompute_ref_log_probs: true, learning_rate: 1e-3, max_steps: 3 });
  assertClose(full.logs[0].loss, Math.LN2, { atol: 1e-6, msg: "full fine-tuning starts at the reference" });
  assert.ok(full.logs.at(-1)!["rewards/margins"] > 0);
  // The reference of a full fine-tuning run is the model before training, computed once.
  const m = Transformer.init(mc, be, { seed: 5 });
  const ref = await precomputeRefLogProbs(m, dataset(), { batch_size: 3 });
  assert.equal(ref.length, 8);
  assertClose(ref[2], await hostLogProbs(m, PAIRS[1].chosen_input_ids, PAIRS[1].chosen_labels), {
    atol: 1e-4,
  });
});

Deno.test("DPO resumes from a checkpoint bit-identically (LoRA, and full with its frozen reference; accumulation 2)", async () => {
  const be = await cpu();
  for (const lora of [{ r: 4 }, null]) await resumes(be, lora);
});

async function resumes(be: Backend, lora: { r: number } | null) {
  const base = {
    lora,
    max_steps: 4,
    per_device_train_batch_size: 1,
    gradient_accumulation_steps: 2,
    save_strategy: "steps" as const,
    save_steps: 2,
  };
  const run = async (dir: string, extra: Record<string, unknown>, stopAt = 0) => {
    const trainer = await createDpoTrainer({
      model: Transformer.init(mc, be, { seed: 5 }),
      config: getTrainingArgs({ output_dir: dir, learning_rate: 1e-2, logging_steps: 1, ...base, ...extra }),
      train_dataset: dataset(),
      progress: false,
      log: () => {},
      hooks: stopAt
        ? {
          on_step_end: (
            { state },
          ) => (state.global_step === stopAt ? { should_training_stop: true } : undefined),
        }
        : {},
    });
    const r = await trainer.train();
    trainer.dispose();
    return r;
  };
  const a = await Deno.makeTempDir(), b = await Deno.makeTempDir();
  const straight = await run(a, {});
  await run(b, {}, 2);
  const resumed = await run(b, { resume_from_checkpoint: true });
  assert.deepEqual(resumed.loss_history, straight.loss_history.slice(2), `lora ${JSON.stringify(lora)}`);
  for (const d of [a, b]) await Deno.remove(d, { recursive: true });
}

Deno.test("runDpo() refuses SFT settings and runTraining() DPO settings (and assistant_only_loss on wrapped text), in one line before reading anything", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = (over: Record<string, unknown>) =>
      getTrainingArgs({
        model: "tiny",
        dataset: join(dir, "none.jsonl"),
        output_dir: join(dir, "run"),
        ...over,
      });
    await assert.rejects(
      runDpo(config({ packing: true, completion_only_loss: false }), { progress: false }),
      (e: Error) =>
        e.message ===
          "Cannot train with DPO: packing true, completion_only_loss false are SFT settings; remove them (DPO scores each chosen and rejected completion whole)",
    );
    await assert.rejects(
      runTraining(config({ loss_type: "hinge" }), { progress: false }),
      (e: Error) =>
        e.message ===
          'Cannot train: loss_type "hinge" is a DPO setting; remove it, or train with deno task cli dpo',
    );
    // assistant_only_loss on text cut into blocks: refused by the config itself, before any run
    assert.throws(
      () => config({ packing: true, packing_strategy: "wrapped", assistant_only_loss: true }),
      /assistant_only_loss: trains the assistant turns of conversations, and packing_strategy wrapped cuts plain text into blocks/,
    );
    await assert.rejects(Deno.stat(join(dir, "run")), Deno.errors.NotFound, "nothing written");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runDpo() trains a saved model on a dataset folder and names a bad row's file, line and field", async () => {
  const dir = await Deno.makeTempDir();
  const texts = ["The quick brown fox.", "A slow green turtle.", "Summarize: it is a fox."];
  const tokenizer = await trainBpeTokenizer(Array(10).fill(texts.join(" ")), { vocab_size: 280 });
  const modelDir = join(dir, "base");
  const be = await createBackend("cpu");
  await saveModel(
    Transformer.init(presetConfig("tiny", { ...mc, vocab_size: 280, max_position_embeddings: 64 }), be),
    modelDir,
  );
  await tokenizer.save(modelDir);
  const data = join(dir, "data");
  await Deno.mkdir(data);
  const row = (i: number) =>
    JSON.stringify({
      prompt: `Summarize: it is a fox ${i}.`,
      chosen: "The quick brown fox.",
      rejected: "A slow green turtle.",
    });
  await Deno.writeTextFile(
    join(data, "train.jsonl"),
    Array.from({ length: 6 }, (_, i) => row(i)).join("\n") + "\n",
  );
  await Deno.writeTextFile(join(data, "validation.jsonl"), row(9) + "\n" + row(10) + "\n");
  const config = (over: Record<string, unknown>) =>
    getTrainingArgs({
      model: modelDir,
      dataset: data,
      output_dir: join(dir, "run"),
      backend: "cpu",
      max_steps: 2,
      per_device_train_batch_size: 2,
      max_seq_length: 48,
      logging_steps: 1,
      eval_strategy: "steps",
      eval_steps: 2,
      save_strategy: "no",
      learning_rate: 1e-2,
      lora: { r: 4 },
      ...over,
    });
  const r = await runDpo(config({}), { progress: false, log: () => {} });
  assert.equal(r.metrics_summary.global_step, 2);
  assert.ok(Number.isFinite(r.metrics_summary["eval_rewards/accuracies"]));
  assert.ok(Number.isFinite(r.metrics_summary["rewards/margins"]));
  const records = (await Deno.readTextFile(join(dir, "run", "metrics.jsonl"))).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.ok(records.some((x) => "rewards/accuracies" in x && "logits/rejected" in x));
  assert.ok(records.some((x) => "eval_rewards/margins" in x));
  await Deno.stat(join(dir, "run", "adapter", "adapter_model.safetensors"));
  // A row without "rejected": one line naming file:line and the field, before anything trains.
  await Deno.writeTextFile(
    join(data, "train.jsonl"),
    row(0) + "\n" + JSON.stringify({ prompt: "p", chosen: "c" }) + "\n",
  );
  await assert.rejects(
    () => runDpo(config({ output_dir: join(dir, "run2") }), { progress: false, log: () => {} }),
    (e: Error) => {
      assert.ok(e instanceof TypeError);
      assert.match(
        e.message,
        /^Cannot build a preference pair from .*train\.jsonl:2: field "rejected" is missing/,
      );
      assert.ok(!e.message.includes("\n"));
      return true;
    },
  );
  await Deno.remove(dir, { recursive: true });
});

// ---- Debian summarization pairs ----

/** Lower-case words of 4+ letters. */
const words = (s: string) => new Set(s.toLowerCase().match(/[a-z]{4,}/g) ?? []);

/**
 * Preference rows from Debian packages: prompt "Summarize: " + the first `chars` characters of the
 * document, chosen the package's summary, rejected the summary of another package that shares no
 * word with the prompt (a sibling package's, libfoo1 against libfoo-dev, would be a coin flip).
 * Each summary is rejected once, so what DPO can learn without reading the prompt cancels out.
 */
function debianRows(records: DataRecord[], chars: number): DataRecord[] {
  const prompt = (r: DataRecord) => `Summarize: ${(r.document as string).slice(0, chars)}\n`;
  const n = records.length,
    order = Array.from({ length: n }, (_, i) => (i * 7919 + 17) % n),
    used = new Set<number>();
  return records.map((r, i) => {
    const p = words(prompt(r));
    const free = (k: number) => k !== i && !used.has(k);
    const j = order.find((k) => free(k) && ![...words(records[k].summary as string)].some((w) => p.has(w))) ??
      order.find(free)!;
    used.add(j);
    return { prompt: prompt(r), chosen: r.summary, rejected: records[j].summary };
  });
}

interface DebianOptions {
  /** Training rows: the DPO pairs. */
  train: number;
  /** The first this many of them give the pre-training examples. */
  pretrain_rows: number;
  validation: number;
  /** Characters of each document in the prompt. */
  chars: number;
  vocab_size: number;
  /** Tokens per pair sequence; with `max_prompt_length`, large enough that no prompt is cut. */
  max_length: number;
  max_prompt_length: number;
  pretrain_steps: number;
  /** Pre-training rounds of `pretrain_steps` each, every one from a fresh optimizer (default 1). */
  pretrain_rounds?: number;
  /** Pre-train on packed rows of `context` tokens, `pack_rows` a step (else one example a row, 32 a step). */
  pack: boolean;
  /** The model's context, and the packed row length (default 128). */
  context?: number;
  /** Packed rows a pre-training step (default 16). */
  pack_rows?: number;
  /** Also pre-train on a span of 3-8 words from inside each document (copying from anywhere). */
  spans?: boolean;
  dpo_steps: number;
  dpo_batch: number;
  /**
   * Full-parameter DPO at learning rate 1e-3 with the reference log-probs computed up front
   * (`precompute_ref_log_probs`), else LoRA (r 8, all-linear) at 3e-3.
   */
  full?: boolean;
  /** Evaluate every this many DPO steps too (the accuracies are returned in `evals`). */
  eval_steps?: number;
}

/**
 * Pre-train a tiny model, then DPO it (LoRA, or all its weights) on Debian pairs; returns the
 * validation preference accuracy (TRL `rewards/accuracies`) before and after, and at each
 * `eval_steps`.
 *
 * The pre-training teaches what a pretrained LM brings to DPO, copying from its prompt, in a
 * budget a test can afford: lead extractive summaries (the document's first 4-10 words after the
 * prompt), and with `spans` windows from inside the document too. From random weights that skill
 * takes thousands of steps on abstractive summaries. Only train rows are read before the evaluation.
 */
async function trainOnDebian(o: DebianOptions) {
  const t0 = performance.now();
  const be = await createBackend("auto");
  const dir = `${SHARED}/datasets/debian/summarization`;
  const train = await readJsonl(`${dir}/train.jsonl`, { max_samples: o.train });
  const valid = await readJsonl(`${dir}/validation.jsonl`, { max_samples: o.validation });
  const trainRows = debianRows(train, o.chars), validRows = debianRows(valid, o.chars);
  const tokenizer = await trainBpeTokenizer(trainRows.slice(0, 1500).map((r) => `${r.prompt}${r.chosen}`), {
    vocab_size: o.vocab_size,
  });
  const model = Transformer.init(
    presetConfig("tiny", {
      vocab_size: o.vocab_size,
      hidden_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      intermediate_size: 192,
      max_position_embeddings: o.context ?? 128,
    }),
    be,
    { seed: 1 },
  );
  const lead = trainRows.slice(0, o.pretrain_rows).map((r, i) => ({
    prompt: r.prompt,
    completion: (r.prompt as string).slice(11).split(/\s+/).filter(Boolean).slice(0, 4 + (i % 7)).join(" "),
  }));
  // A window inside the document (not its first word): its first token can only be guessed from the
  // prompt's words, the rest copied.
  const spans = !o.spans ? [] : trainRows.slice(0, o.pretrain_rows).map((r, i) => {
    const w = (r.prompt as string).slice(11).split(/\s+/).filter(Boolean), n = 3 + (i % 6);
    const start = w.length > n + 1 ? 1 + ((i * 2654435761) >>> 0) % (w.length - n) : 0;
    return { prompt: r.prompt, completion: w.slice(start, start + n).join(" ") };
  });
  const leadEx = buildSftExamples([...lead, ...spans], tokenizer, { max_length: null }).examples
    .filter((e) => e.input_ids.length <= o.max_length);
  const work = await Deno.makeTempDir();
  const preRows = o.pack
    ? packExamples(leadEx, { max_length: o.context ?? 128, pad_token_id: 0 }).rows
    : padExamples(leadEx, { max_length: o.max_length, pad_token_id: 0 }).rows;
  // Each round is a fresh Trainer: a new optimizer and warmup over the same data order (a warm restart).
  for (let round = 0; round < (o.pretrain_rounds ?? 1); round++) {
    const pre = createTrainer({
      model,
      config: getTrainingArgs({
        output_dir: join(work, `pre-${round}`),
        max_steps: o.pretrain_steps,
        per_device_train_batch_size: o.pack ? o.pack_rows ?? 16 : 32,
        learning_rate: 3e-3,
        lr_scheduler_type: "constant_with_warmup",
        warmup_steps: 20,
        logging_steps: o.pretrain_steps,
        save_strategy: "no",
      }),
      train_dataset: new RowDataset(preRows),
      progress: false,
      log: () => {},
    });
    await pre.train();
    pre.dispose();
  }
  const pairs = (rows: DataRecord[], source: string) =>
    new PreferenceDataset(
      buildPreferenceExamples(rows, tokenizer, {
        max_length: o.max_length,
        max_prompt_length: o.max_prompt_length,
      })
        .examples,
      { pad_token_id: 0, source },
    );
  const trainSet = pairs(trainRows, "debian train"), validSet = pairs(validRows, "debian validation");
  const evals: [number, number][] = [];
  const dpo = await createDpoTrainer({
    model,
    config: getTrainingArgs({
      output_dir: join(work, "dpo"),
      max_steps: o.dpo_steps,
      per_device_train_batch_size: o.dpo_batch,
      per_device_eval_batch_size: 40,
      learning_rate: o.full ? 1e-3 : 3e-3,
      lr_scheduler_type: "constant",
      beta: 0.1,
      logging_steps: o.dpo_steps,
      ...(o.eval_steps ? { eval_strategy: "steps" as const, eval_steps: o.eval_steps } : {}),
      save_strategy: "no",
      ...(o.full
        ? { precompute_ref_log_probs: true }
        : { lora: { r: 8, lora_alpha: 16, target_modules: "all-linear" as const } }),
    }),
    train_dataset: trainSet,
    eval_dataset: validSet,
    progress: false,
    log: () => {},
    hooks: {
      on_evaluate: (c, rec) => void evals.push([c.state.global_step, rec["eval_rewards/accuracies"]]),
    },
  });
  const before = (await dpo.evaluate())["eval_rewards/accuracies"];
  const result = await dpo.train();
  const after = evals.at(-1)?.[0] === o.dpo_steps
    ? evals.at(-1)![1]
    : (await dpo.evaluate())["eval_rewards/accuracies"];
  dpo.dispose();
  model.dispose();
  await Deno.remove(work, { recursive: true });
  return { before, after, evals, result, backend: be.name, seconds: (performance.now() - t0) / 1000 };
}

// DPO sharpens the copying the pre-training gave it (the reference model alone prefers a summary
// under its own document to the same summary under another's for about 0.77 of validation pairs
// after 300 lead steps). Here prompts are cut to their last 40 tokens, which often drops the
// document's start, where the package name is. Webgpu on llvmpipe, 2 cores (the slower machine,
// 2026-12-07), validation rewards/accuracies after pre-training / DPO steps (batch 32): 200 / 40
// (this test, 2 min 35 s) 0.620; 300 / 60 (its earlier form, 4 min 16 s) 0.635; 200 / 60 0.600; 300 / 40 0.570;
// 200 / 60 at batch 16 0.585; 300 / 60 with uncut prompts and packed pre-training (16 x 128 tokens
// a step) 0.595 (300 steps is before copying appears there).
Deno.test("DPO on Debian summarization pairs lifts validation preference accuracy above chance (fast)", async () => {
  const r = await trainOnDebian({
    train: 3000,
    pretrain_rows: 3000,
    validation: 200,
    chars: 100,
    vocab_size: 1024,
    max_length: 56,
    max_prompt_length: 40,
    pretrain_steps: 200,
    pack: false,
    dpo_steps: 40,
    dpo_batch: 32,
  });
  console.log(
    `  ${r.backend}: validation rewards/accuracies ${r.before} -> ${r.after.toFixed(3)} in ${
      r.seconds.toFixed(0)
    }s`,
  );
  assert.equal(r.before, 0, "no reward before training: the policy is the reference");
  assert.ok(r.after >= 0.55, `validation preference accuracy ${r.after}`);
});

// The levers are the copy skill, fresh pairs and full-parameter DPO. Pre-training on all 14000 train
// rows, packed: lead completions plus a window of 3-8 words from inside each document, two rounds
// of 3000 steps of 12 x 256 tokens, the second from a fresh optimizer and warmup. Prompts of 250
// characters (under 1% are over 160 tokens and cut); DPO on 14000 pairs, each step on unseen ones (with 3000 the policy memorizes them), all weights at 1e-3 against
// reference log-probs computed up front, which also skips the reference forward of every step.
// Evaluated on the whole validation split (2228 pairs): its first 200 rows (packages 0-d) have no
// python-/golang-/r-cran-like families and are harder. The rejected summary shares no word with the
// prompt, so the pairs whose chosen summary shares one are those copying can decide: 0.895 of them
// at 120 characters, 0.943 at 250, 0.981 for whole documents.
// Measured with trainOnDebian's code in a script that logs every evaluation (llvmpipe, 2 cores
// partly shared), validation rewards/accuracies after 100 / 200 / 300 / 400 DPO steps:
//   250 characters, 3000 pre-training steps, then 3000 more (a second run from the saved model,
//   warmed up again; what this test does in one process): 0.885 / 0.909 / 0.918 / 0.918;
//   250 characters, 6000 steps in one round (the previous form of this test, 4516 s): 0.892 /
//   0.890 / 0.890 (300 steps). One run each: the restart seems to matter, not only the steps;
//   250 characters, 3000 steps of 12 x 256: 0.844 / 0.881 / 0.889 / 0.887 (2069 s);
//   the same with DPO's learning rate decayed by cosine: 0.847 / 0.880 / 0.888 / 0.889;
//   the same with DPO at 2e-3: 0.828 / 0.865 / 0.859 (300 steps);
//   250 characters, 1000 steps: 0.755 / 0.795 / 0.800 / 0.820;
//   120 characters, 1000 pre-training steps of 16 x 128: 0.803 / 0.838 / 0.840 / 0.838;
//   the same with 2 heads of 32 rather than 4 of 16: 0.799 / 0.802 / 0.835 / 0.831;
//   120 characters, 3000 steps: 0.851 / 0.870 / 0.877 / 0.875 (1315 s);
//   120 characters, 5000 steps with cosine decay: 0.839 / 0.858 (stopped);
//   LoRA (r 8, 3e-3) after 1000 lead steps at 120 characters: 0.779 / 0.798 / 0.824 at 100-300.
Deno.test({
  name: "SLOW: DPO on Debian summarization pairs after a longer pre-training: validation preference accuracy",
  ignore: !SLOW,
  async fn() {
    const r = await trainOnDebian({
      train: 14000,
      pretrain_rows: 14000,
      validation: 2228,
      chars: 250,
      vocab_size: 1024,
      max_length: 190,
      max_prompt_length: 160,
      pretrain_steps: 3000,
      pretrain_rounds: 2,
      pack: true,
      context: 256,
      pack_rows: 12,
      spans: true,
      dpo_steps: 300,
      dpo_batch: 32,
      full: true,
      eval_steps: 100,
    });
    console.log(
      `  ${r.backend}: validation rewards/accuracies ${r.before} -> ${
        r.evals.map(([s, a]) => `${a.toFixed(3)} @${s}`).join(", ")
      } in ${r.seconds.toFixed(0)}s`,
    );
    assert.equal(r.before, 0, "no reward before training: the policy is the reference");
    assert.ok(r.after >= 0.9, `validation preference accuracy ${r.after}`);
  },
});
