/**
 * The demo recipe: pre-train the `tiny` model on the bundled Debian package descriptions, then
 * sample from it. Reads top to bottom: config, data, model, train, evaluate, report.
 *
 * Writes one run folder: `config.json` (run settings), `metrics.jsonl`, `model/` (Hugging Face
 * layout + tokenizer), `curves.svg`, `samples.txt`.
 *
 * @module
 */
import { join } from "node:path";
import { backward, noGrad } from "../kernels/autograd.ts";
import { createBackend } from "../kernels/backend.ts";
import { AdamW } from "../kernels/optim.ts";
import { trainBpeTokenizer } from "../models/bpe.ts";
import { presetConfig } from "../models/config.ts";
import { saveModel } from "../models/pretrained.ts";
import { Transformer } from "../models/transformer.ts";
import { loadDebian } from "../data/debian.ts";
import { createLrSchedule } from "../training/schedule.ts";
import { plotTrainingCurves } from "../evaluation/plot.ts";

/** Options of {@linkcode runDemo}. */
export interface DemoOptions {
  output_dir?: string;
  max_steps?: number;
  per_device_train_batch_size?: number;
  block_size?: number;
  learning_rate?: number;
  backend?: "webgpu" | "cpu" | "auto";
  seed?: number;
}

/** What {@linkcode runDemo} returns. */
export interface DemoResult {
  output_dir: string;
  final_loss: number;
  final_eval_loss: number;
  unigram_entropy: number;
  sample: string;
}

/** Run the demo end to end. */
export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  // ---- config ----
  const out = opts.output_dir ?? "runs/demo";
  const steps = opts.max_steps ?? 200, B = opts.per_device_train_batch_size ?? 8, T = opts.block_size ?? 64;
  const lr = opts.learning_rate ?? 3e-3;
  await Deno.mkdir(out, { recursive: true });
  const be = await createBackend(opts.backend ?? "auto");
  console.error(`demo: ${be.name} on ${be.adapter}; ${steps} steps of ${B}x${T} tokens -> ${out}`);

  // ---- data: Debian descriptions as plain text, a byte-level BPE of 512 ids ----
  const train = (await loadDebian("summarization", "train")).map((r) => (r as { document: string }).document);
  const valid = (await loadDebian("summarization", "validation")).map((r) =>
    (r as { document: string }).document
  );
  const tok = await trainBpeTokenizer(train.slice(0, 4000), {
    vocab_size: 512,
    special_tokens: ["<|endoftext|>"],
  });
  const eot = tok.tokenToId("<|endoftext|>")!;
  const stream = (docs: string[]) => docs.flatMap((d) => [...tok.encode(d), eot]);
  const trainIds = stream(train.slice(0, 6000)), validIds = stream(valid.slice(0, 300));
  const counts = new Float64Array(512);
  for (const id of trainIds) counts[id]++;
  const unigram = -counts.reduce(
    (s, c) => (c ? s + (c / trainIds.length) * Math.log(c / trainIds.length) : s),
    0,
  );

  // ---- model ----
  const config = presetConfig("tiny", { vocab_size: 512, max_position_embeddings: Math.max(128, T) });
  const model = Transformer.init(config, be, { seed: opts.seed ?? 1337 });
  model.setTrainable(true);
  const opt = new AdamW({ lr, weight_decay: 0.1, max_grad_norm: 1.0, betas: [0.9, 0.95] });
  const schedule = createLrSchedule(
    { lr_scheduler_type: "cosine", learning_rate: lr, warmup_steps: 10 },
    steps,
  );
  const batchAt = (ids: number[], k: number) => {
    const b = new Int32Array(B * T);
    for (let i = 0; i < B; i++) {
      const start = ((k * B + i) * 9973 * T) % (ids.length - T);
      for (let t = 0; t < T; t++) b[i * T + t] = ids[start + t];
    }
    return be.fromArray(b, [B, T], "i32");
  };
  const evalLoss = async () => {
    let s = 0;
    for (let k = 0; k < 4; k++) {
      const ids = batchAt(validIds, k);
      const l = noGrad(() => model.loss(ids, ids));
      s += (await l.toArray())[0];
      l.dispose();
      ids.dispose();
    }
    return s / 4;
  };

  // ---- train ----
  const log: Record<string, number>[] = [];
  const metrics = await Deno.open(join(out, "metrics.jsonl"), { write: true, create: true, truncate: true });
  const enc = new TextEncoder();
  const t0 = performance.now();
  let loss = NaN, evl = NaN;
  for (let step = 1; step <= steps; step++) {
    const ids = batchAt(trainIds, step);
    const l = model.loss(ids, ids);
    backward(l);
    const stepLr = schedule.lrAt(step - 1);
    opt.step(model.parameters(), { lr: stepLr });
    for (const p of model.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
    ids.dispose();
    if (step % 10 === 0 || step === steps) {
      loss = (await l.toArray())[0];
      const rec: Record<string, number> = { step, loss, learning_rate: stepLr };
      if (step % 50 === 0 || step === steps) rec.eval_loss = evl = await evalLoss();
      const s = (performance.now() - t0) / 1000;
      const eta = (s / step) * (steps - step);
      console.error(
        `step ${step}/${steps} loss ${loss.toFixed(4)}${rec.eval_loss ? ` eval ${evl.toFixed(4)}` : ""} ` +
          `lr ${stepLr.toExponential(2)} ${((step * B * T) / s).toFixed(0)} tok/s eta ${eta.toFixed(0)}s`,
      );
      log.push(rec);
      await metrics.write(enc.encode(JSON.stringify(rec) + "\n"));
    }
    l.dispose();
  }
  metrics.close();

  // ---- evaluate: sample with the KV cache ----
  const prompt = tok.encode("This package provides");
  const cache = model.createCache(1, config.max_position_embeddings);
  const generated: number[] = [];
  let seed = (opts.seed ?? 1337) >>> 0;
  const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296);
  let input = be.fromArray(prompt, [1, prompt.length], "i32");
  for (let i = 0; i < 40 && cache.length < cache.max_len; i++) {
    const logits = noGrad(() => model.forward(input, { cache }));
    const arr = await logits.toArray();
    const last = arr.subarray((input.shape[1] - 1) * 512, input.shape[1] * 512);
    // temperature 0.8 + top-k 40, seeded: greedy decoding of a tiny model just repeats itself
    const top = [...last.keys()].sort((a, b) => last[b] - last[a]).slice(0, 40);
    const w = top.map((j) => Math.exp((last[j] - last[top[0]]) / 0.8));
    let u = rnd() * w.reduce((a, b) => a + b, 0), best = top[0];
    for (let j = 0; j < top.length; j++) {
      if ((u -= w[j]) <= 0) {
        best = top[j];
        break;
      }
    }
    logits.dispose();
    input.dispose();
    if (best === eot) break;
    generated.push(best);
    input = be.fromArray([best], [1, 1], "i32");
  }
  const sample = tok.decode([...prompt, ...generated]);

  // ---- report ----
  await saveModel(model, join(out, "model"));
  await tok.save(join(out, "model"));
  plotTrainingCurves(log, join(out, "curves.svg"));
  await Deno.writeTextFile(join(out, "samples.txt"), sample + "\n");
  await Deno.writeTextFile(
    join(out, "config.json"),
    JSON.stringify(
      { model: config, max_steps: steps, per_device_train_batch_size: B, block_size: T, learning_rate: lr },
      null,
      2,
    ),
  );
  console.error(`demo: eval loss ${evl.toFixed(4)} (unigram entropy of the data ${unigram.toFixed(4)} nats)`);
  console.error(`demo: sample: ${sample}`);
  model.dispose();
  return { output_dir: out, final_loss: loss, final_eval_loss: evl, unigram_entropy: unigram, sample };
}
