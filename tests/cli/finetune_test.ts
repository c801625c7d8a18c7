/**
 * Adapters through the Trainer, as users run them: `deno task cli train --config lora.yaml` on a
 * model pre-trained on Debian text writes a PEFT adapter; stopped at a checkpoint and resumed, every
 * step's loss equals the uninterrupted run's (LoRA, DoRA, QLoRA); `merge_adapter` writes the merged
 * model; bad adapter settings are one line before any step.
 */
import { join } from "node:path";
import { stringify } from "npm:yaml@^2.9";
import { noGrad } from "../../kernels/autograd.ts";
import { openSafetensors } from "../../models/formats/safetensors.ts";
import { loadModel } from "../../models/pretrained.ts";
import { loadAdapter, quantizeModel } from "../../training/peft.ts";
import { assert, assertAllClose, ROOT, SHARED, SLOW } from "../_assert.ts";
import { cpu } from "../_check.ts";
import { assertFails, type CliRun } from "./_cli.ts";

const dec = new TextDecoder();

async function run(cwd: string, args: string[]): Promise<CliRun> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}/cli.ts`, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

const ok = async (cwd: string, args: string[]) => {
  const r = await run(cwd, args);
  assert.equal(r.code, 0, r.err);
  return r;
};

/** A folder with Debian text and a tiny model pre-trained on it for a few steps (`base/model`). */
async function setup(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "fledge-ft-" });
  const lines = (await Deno.readTextFile(`${SHARED}/datasets/debian/summarization/validation.jsonl`))
    .split("\n").filter(Boolean).slice(0, 120);
  await Deno.writeTextFile(join(dir, "data.jsonl"), lines.join("\n") + "\n");
  await ok(dir, [
    "train",
    "--model",
    "tiny",
    "--dataset",
    "data.jsonl",
    "--dataset_text_field",
    "document",
    "--backend",
    "cpu",
    "--max_steps",
    "6",
    "--per_device_train_batch_size",
    "4",
    "--block_size",
    "32",
    "--eval_strategy",
    "no",
    "--save_strategy",
    "no",
    "--output_dir",
    "base",
  ]);
  return dir;
}

/** A run config in YAML: the pre-trained base, 8 steps, a checkpoint every 4. */
function config(out: string, extra: Record<string, unknown>): string {
  return stringify({
    model: "base/model",
    dataset: "data.jsonl",
    dataset_text_field: "document",
    backend: "cpu",
    output_dir: out,
    max_steps: 8,
    per_device_train_batch_size: 2,
    max_seq_length: 32,
    learning_rate: 1e-2,
    logging_steps: 1,
    save_steps: 4,
    eval_strategy: "no",
    ...extra,
  });
}

const losses = async (file: string) =>
  (await Deno.readTextFile(file)).trim().split("\n").map((l) => JSON.parse(l))
    .filter((r) => "loss" in r).map((r) => [r.step, r.loss]);

const KINDS = {
  lora: { lora: { r: 4, lora_alpha: 8 } },
  dora: { lora: { r: 4, lora_alpha: 8, use_dora: true } },
  qlora: { lora: { r: 4, lora_alpha: 8 }, quantization: { load_in_4bit: true } },
};

const dir = await setup();

for (const [kind, extra] of Object.entries(KINDS)) {
  Deno.test(`train --config ${kind}.yaml writes a PEFT adapter, and a resume from a checkpoint repeats every step's loss`, async () => {
    await Deno.writeTextFile(join(dir, `${kind}.yaml`), config(`${kind}-a`, extra));
    await ok(dir, ["train", "--config", `${kind}.yaml`]);
    const out = join(dir, `${kind}-a`);
    // PEFT's files and key names
    const cfg = JSON.parse(await Deno.readTextFile(join(out, "adapter/adapter_config.json")));
    assert.equal(cfg.peft_type, "LORA");
    assert.equal(cfg.r, 4);
    assert.equal(cfg.use_dora, kind === "dora");
    const r = await openSafetensors(join(out, "adapter/adapter_model.safetensors"));
    const names = r.names();
    r.close();
    assert.ok(names.length > 0);
    for (const n of names) {
      assert.match(
        n,
        /^base_model\.model\.model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.(lora_[AB]\.weight|lora_magnitude_vector)$/,
      );
    }
    assert.equal(names.some((n) => n.endsWith("lora_magnitude_vector")), kind === "dora");
    assert.ok(
      !(await Deno.stat(join(out, "model")).catch(() => null)),
      "no merged model without merge_adapter",
    );
    // the checkpoint holds the adapter, not the base
    const ck = [...Deno.readDirSync(join(out, "checkpoints/step-4"))].map((e) => e.name);
    assert.ok(ck.includes("adapter_model.safetensors") && !ck.includes("model.safetensors"), ck.join());

    // resumed from step 4 into another folder: the same losses at steps 5..8, the same adapter bytes
    await Deno.writeTextFile(
      join(dir, `${kind}-b.yaml`),
      config(`${kind}-b`, { ...extra, resume_from_checkpoint: `${kind}-a/checkpoints/step-4` }),
    );
    await ok(dir, ["train", "--config", `${kind}-b.yaml`]);
    assert.deepEqual(
      await losses(join(dir, `${kind}-b/metrics.jsonl`)),
      await losses(join(out, "metrics.jsonl")),
    );
    // and the run's train_loss is the whole run's, not the mean of the steps after the resume
    const trainLoss = async (run: string) =>
      (await Deno.readTextFile(join(dir, run, "metrics.jsonl"))).trim().split("\n").map((l) => JSON.parse(l))
        .findLast((r) => "train_loss" in r).train_loss;
    assert.equal(await trainLoss(`${kind}-b`), await trainLoss(`${kind}-a`));
    assert.deepEqual(
      await Deno.readFile(join(dir, `${kind}-b/adapter/adapter_model.safetensors`)),
      await Deno.readFile(join(out, "adapter/adapter_model.safetensors")),
    );
    if (kind !== "lora") return;
    // another lora or quantization section would train on top of the checkpoint's adapter without a word
    const from = { resume_from_checkpoint: `${kind}-a/checkpoints/step-4` };
    for (
      const [name, changed, re] of [
        [
          "r8",
          { ...from, lora: { r: 8, lora_alpha: 16 } },
          /lora\.r 4 -> 8, lora\.lora_alpha 8 -> 16: the checkpoint/,
        ],
        [
          "full",
          from,
          /lora set in the checkpoint, unset now: the checkpoint holds the adapter its lora section made/,
        ],
        ["4bit", { ...from, ...KINDS.qlora }, /quantization unset in the checkpoint, set now/],
      ] as const
    ) {
      await Deno.writeTextFile(join(dir, `${name}.yaml`), config(`${kind}-${name}`, changed));
      assertFails(await run(dir, ["train", "--config", `${name}.yaml`]), 2, re);
    }
  });
}

Deno.test("merge_adapter also writes model/, the base with the adapter merged: the same logits as base + adapter (QLoRA: on the 4-bit base)", async () => {
  for (const kind of ["dora", "qlora"] as const) {
    await Deno.writeTextFile(
      join(dir, "merge.yaml"),
      config(`merged-${kind}`, { ...KINDS[kind], merge_adapter: true }),
    );
    await ok(dir, ["train", "--config", "merge.yaml"]);
    const be = await cpu();
    const merged = await loadModel(join(dir, `merged-${kind}/model`), { backend: be });
    const base = await loadModel(join(dir, "base/model"), { backend: be });
    // QLoRA's merge is made in f32 (model/ is f32): quantizing it again had rounded part of the adapter away
    if (kind === "qlora") quantizeModel(base);
    await loadAdapter(base, join(dir, `merged-${kind}/adapter`));
    const ids = be.fromArray(Int32Array.from({ length: 32 }, (_, i) => (i * 37) % 500), [2, 16], "i32");
    const [a, b] = noGrad(() => [merged.forward(ids), base.forward(ids)]);
    assertAllClose(await a.toArray(), await b.toArray(), { atol: 1e-4, rtol: 1e-4, msg: kind });
    for (const t of [a, b, ids]) t.dispose();
    merged.dispose();
    base.dispose();
    assert.ok((await Deno.stat(join(dir, `merged-${kind}/model/tokenizer.json`))).isFile);
  }
});

Deno.test("bad adapter settings are one line naming the field, exit 2, before any training step", async () => {
  const bad = async (extra: Record<string, unknown>, re: RegExp) => {
    await Deno.writeTextFile(join(dir, "bad.yaml"), config("bad", extra));
    const r = await run(dir, ["train", "--config", "bad.yaml"]);
    assertFails(r, 2, re);
    assert.ok(!(await Deno.stat(join(dir, "bad")).catch(() => null)), "nothing written");
  };
  await bad(
    { lora: { r: 4, target_modules: ["qq_proj"] } },
    /target_modules "qq_proj" \(did you mean "q_proj"\?\) not found.*its linear modules are: q_proj, k_proj/,
  );
  await bad({ lora: { r: 0 } }, /bad\.yaml.*lora\.r: must be >= 1, got 0/);
  await bad({ lora: { r: 4, lora_dropout: 1 } }, /lora\.lora_dropout: must be >= 0 and < 1, got 1/);
  await bad(
    { quantization: { load_in_4bit: true } },
    /quantization: 4-bit base weights are frozen, so training needs adapters/,
  );
  await bad({ merge_adapter: true }, /merge_adapter: there is no adapter to merge/);
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

Deno.test("sft trains the completion of prompt/completion rows with TRL's SFT defaults under the config", async () => {
  const rows = (await Deno.readTextFile(`${SHARED}/datasets/debian/classification-binary/train.jsonl`))
    .split("\n").filter(Boolean).slice(0, 40).map((l) => JSON.parse(l));
  await Deno.writeTextFile(
    join(dir, "pc.jsonl"),
    rows.map((r) =>
      JSON.stringify({ prompt: `${r.text.slice(0, 60)}\nA game? `, completion: r.label ? "yes" : "no" })
    ).join("\n") + "\n",
  );
  await Deno.writeTextFile(
    join(dir, "sft.yaml"),
    stringify({
      model: "base/model",
      dataset: "pc.jsonl",
      backend: "cpu",
      output_dir: "sft",
      max_steps: 3,
      per_device_train_batch_size: 4,
      max_seq_length: 64,
      eval_strategy: "no",
      save_strategy: "no",
      lora: { r: 4 },
    }),
  );
  await ok(dir, ["sft", "--config", "sft.yaml", "--logging_steps", "1"]);
  const saved = await Deno.readTextFile(join(dir, "sft/config.yaml"));
  assert.match(saved, /learning_rate: 0\.00002\n/, "TRL's SFT learning rate where the config sets none");
  assert.match(saved, /gradient_checkpointing: true/);
  assert.match(saved, /logging_steps: 1\n/, "a flag still wins");
  assert.equal((await losses(join(dir, "sft/metrics.jsonl"))).length, 3);
  assert.ok((await Deno.stat(join(dir, "sft/adapter/adapter_model.safetensors"))).isFile);
});

Deno.test("sft refuses packed examples cut to no trained token, and an evaluation whose held-out split is empty", async () => {
  // packed into 6 tokens, every completion is cut off: it trained on nothing with a loss of 0
  assertFails(
    await run(dir, [
      "sft",
      "--config",
      "sft.yaml",
      "--output_dir",
      "cut",
      "--packing",
      "true",
      "--max_length",
      "6",
    ]),
    2,
    /Cannot build an SFT example from pc\.jsonl:1: no token is trained once cut to max_length 6 \(of 51\); raise max_length, .*packing_strategy bfd_split/,
  );
  // the 10% hash split of 3 rows holds none: it named eval_dataset, which no flag sets
  await Deno.writeTextFile(
    join(dir, "pc3.jsonl"),
    (await Deno.readTextFile(join(dir, "pc.jsonl"))).split("\n").slice(0, 3).join("\n"),
  );
  assertFails(
    await run(dir, [
      "sft",
      "--config",
      "sft.yaml",
      "--output_dir",
      "e3",
      "--dataset",
      "pc3.jsonl",
      "--eval_strategy",
      "steps",
      "--eval_steps",
      "1",
    ]),
    2,
    /Cannot evaluate: the 10% hash split of the \d+ examples of pc3\.jsonl holds none; add a validation split file/,
  );
  // with rows to hold out, it says so: the training set shrank when evaluation was turned on
  const held = await run(dir, [
    "sft",
    "--config",
    "sft.yaml",
    "--output_dir",
    "e10",
    "--max_steps",
    "1",
    "--eval_strategy",
    "steps",
    "--eval_steps",
    "1",
  ]);
  assert.equal(held.code, 0, held.err);
  assert.match(held.err, /fledge: evaluation holds out a stable 10% of pc\.jsonl, which does not train/);
});

Deno.test({
  name: "QLoRA (NF4 + double quantization) ends within 3% of LoRA's loss after 200 steps (slow)",
  ignore: !SLOW,
  async fn() {
    const finals: number[] = [];
    for (
      const [kind, extra] of [["lora", KINDS.lora], ["qlora", {
        ...KINDS.qlora,
        quantization: { load_in_4bit: true, bnb_4bit_use_double_quant: true },
      }]] as const
    ) {
      await Deno.writeTextFile(
        join(dir, `long-${kind}.yaml`),
        config(`long-${kind}`, {
          ...extra,
          max_steps: 200,
          save_strategy: "no",
          logging_steps: 10,
          learning_rate: 3e-3,
        }),
      );
      await ok(dir, ["train", "--config", `long-${kind}.yaml`]);
      const l = await losses(join(dir, `long-${kind}/metrics.jsonl`));
      finals.push(l.at(-1)![1]);
    }
    const [lora, qlora] = finals;
    assert.ok(Math.abs(qlora - lora) / lora <= 0.03, `LoRA ${lora} vs QLoRA ${qlora}`);
  },
});
