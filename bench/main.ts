/**
 * `deno task bench`: every benchmark on the current adapter, as JSON lines on stdout (also written
 * to `bench/out/results.jsonl`), then a table. Never asserted in tests.
 *
 * Flags: `--quick` (smaller sizes),
 * `--only matmul,attention,block,train_tfjs,load_model,finetune,packing` (train_tfjs, fledge vs
 * tfjs-webgpu training tokens/s; load_model, a 1 GB checkpoint's peak RSS; finetune, full / LoRA /
 * DoRA / QLoRA step time and peak memory of the `small` preset through the Trainer; and packing,
 * training tokens/s of packed vs padded rows of the same Debian documents, run only when named).
 * @module
 */
import { parseFlags } from "../util/flags.ts";
import { createBackend } from "../kernels/backend.ts";
import { benchAttention } from "./attention.ts";
import { benchBlock } from "./block.ts";

type Record = {
  op: string;
  shape: string;
  ms: number;
  backend: string;
  adapter: string;
  [k: string]: unknown;
};

const values = parseFlags("bench", Deno.args, { quick: { type: "boolean" }, only: { type: "string" } });
const only = values.only ? new Set(values.only.split(",")) : null;
const quick = values.quick ?? false;
const be = await createBackend("auto");
const records: Record[] = [];
const emit = (rs: Record[]) => {
  for (const r of rs) {
    console.log(JSON.stringify(r));
    records.push(r);
  }
};

if (!only || only.has("matmul")) {
  const { benchMatmul } = await import("./matmul.ts");
  const shapes: [number, number, number][] | undefined = quick
    ? [[256, 256, 256], [512, 512, 512], [1024, 1024, 1024]]
    : undefined;
  emit(await benchMatmul({ shapes }) as unknown as Record[]);
}
if (!only || only.has("attention")) {
  emit(
    await benchAttention({
      backend: be,
      T: quick ? [128, 256] : [128, 256, 512, 1024],
    }) as unknown as Record[],
  );
}
if (!only || only.has("block")) {
  emit(
    await benchBlock({ backend: be, presets: quick ? ["tiny"] : ["tiny", "small"] }) as unknown as Record[],
  );
}

if (only?.has("train_tfjs")) {
  // fledge vs tfjs-webgpu training tokens/s; ~10 min with both models, so only when named
  const { benchTrainTfjs } = await import("./train_tfjs.ts");
  emit(await benchTrainTfjs({ models: quick ? ["tiny"] : ["tiny", "small"] }) as unknown as Record[]);
}
if (only?.has("load_model")) {
  const { benchLoadModel } = await import("./load_model.ts");
  const r = await benchLoadModel({ backend: be, target_bytes: quick ? 1e8 : 1e9 });
  emit([
    { ...r, op: "load_model", shape: `${r.shape} (${(r.bytes / 1e6).toFixed(0)} MB)` } as unknown as Record,
  ]);
}

let finetuneTable = "";
if (only?.has("finetune")) {
  // full fine-tuning vs LoRA, DoRA, QLoRA through createTrainer + train(); minutes on a CPU adapter
  const { benchFinetune, finetuneTable: table } = await import("./finetune.ts");
  const rs = await benchFinetune({ backend: be, ...(quick ? { B: 2, T: 64, steps: 2 } : {}) });
  emit(rs as unknown as Record[]);
  finetuneTable = table(rs);
}

if (only?.has("packing")) {
  // packed rows (bfd, segment ids) vs the same documents padded one per row: the same real tokens
  const { benchPacking } = await import("./packing.ts");
  emit(await benchPacking({ backend: be, examples: quick ? 16 : 48 }) as unknown as Record[]);
}

await Deno.mkdir(new URL("./out/", import.meta.url), { recursive: true });
await Deno.writeTextFile(
  new URL("./out/results.jsonl", import.meta.url),
  records.map((r) => JSON.stringify(r)).join("\n") + "\n",
);

const rate = (r: Record) =>
  r.gflops !== undefined
    ? `${r.gflops} GFLOP/s`
    : r.tokens_per_s !== undefined
    ? `${r.tokens_per_s} tok/s`
    : r.speedup !== undefined
    ? `${r.speedup}x`
    : "";
console.error(
  `\n${"op".padEnd(16)} ${"shape".padEnd(44)} ${"backend".padEnd(14)} ${"ms".padStart(10)}  rate`,
);
for (const r of records) {
  const op = String(r.op) + (r.pass ? ` ${r.pass === "forward" ? "fwd" : "fwd+bwd"}` : "") +
    (r.method ? ` ${r.method}` : "") + (r.layout ? ` ${r.layout}` : "");
  console.error(
    `${op.padEnd(16)} ${r.shape.padEnd(44)} ${r.backend.padEnd(14)} ${r.ms.toFixed(2).padStart(10)}  ${
      rate(r)
    }`,
  );
}
if (finetuneTable) console.error(`\n${finetuneTable}`);
console.error(`adapter: ${be.adapter}`);
