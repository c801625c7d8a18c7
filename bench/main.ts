/**
 * `deno task bench`: every benchmark on the current adapter, as JSON lines on stdout (also written
 * to `bench/out/results.jsonl`), then a table. Never asserted in tests. The runner is `bench/run.ts`,
 * shared with `deno task cli bench`.
 *
 * Flags: `--quick` (smaller sizes),
 * `--only matmul,attention,block,train_tfjs,load_model,finetune,packing,generate` (train_tfjs, fledge
 * vs tfjs-webgpu training tokens/s; load_model, a 1 GB checkpoint's peak RSS; finetune, full / LoRA /
 * DoRA / QLoRA step time and peak memory of the `small` preset through the Trainer; packing,
 * training tokens/s of packed vs padded rows of the same Debian documents; and generate, greedy
 * decoding and label-scoring throughput of the recipes' base model shape; run only when named).
 * @module
 */
import { parseFlags } from "../util/flags.ts";
import { benchTable, runBenchmarks } from "./run.ts";
import { fileURLToPath } from "node:url";
import { writeFileAtomic } from "../util/atomic.ts";

const values = parseFlags("bench", Deno.args, { quick: { type: "boolean" }, only: { type: "string" } });
const result = await runBenchmarks({
  only: values.only ? [values.only] : undefined,
  quick: values.quick,
  onRecord: (r) => console.log(JSON.stringify(r)),
});
// the newest run's records (each run replaces the last one's, atomically)
await writeFileAtomic(
  fileURLToPath(new URL("./out/results.jsonl", import.meta.url)),
  result.records.map((r) => JSON.stringify(r)).join("\n") + "\n",
);
console.error(`\n${benchTable(result)}`);
