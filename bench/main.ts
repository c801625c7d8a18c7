/**
 * `deno task bench`: `deno task cli bench` (its flags, help and one-line errors) with the records
 * also written to `bench/out/results.jsonl`, replaced by each run: every default benchmark on
 * the current adapter as JSON lines on stdout, then a table. Never asserted in tests. The runner is
 * `bench/run.ts`.
 *
 * Flags: `--quick` (smaller sizes), `--only NAME` (repeatable or comma-separated):
 * matmul, attention, block (the default), train_tfjs (fledge vs tfjs-webgpu training tokens/s),
 * load_model (a 1 GB checkpoint's peak RSS), finetune (full / LoRA / DoRA / QLoRA step time and peak
 * memory of the `small` preset through the Trainer), packing (training tokens/s of packed vs
 * padded rows of the same Debian documents) and generate (greedy decoding and label-scoring
 * throughput of the recipes' base model shape); `--json`; `--help`.
 * @module
 */
import { fileURLToPath } from "node:url";
import { main } from "../cli.ts";

const output = fileURLToPath(new URL("./out/results.jsonl", import.meta.url));
const help = Deno.args.some((a) => a === "-h" || a === "--help");
Deno.exit(await main(["bench", ...(help ? [] : ["--output", output]), ...Deno.args]));
