/**
 * `deno task cli bench`: the benchmarks of `deno task bench` through the same runner
 * (`bench/run.ts`): JSON lines on stdout as they are measured and a table on stderr, or one JSON
 * object with `--json`. Timings are printed, never asserted.
 *
 * @module
 */
import { parseFlags } from "../util/flags.ts";
import { BENCHMARKS, benchTable, DEFAULT_BENCHMARKS, runBenchmarks } from "../bench/run.ts";
import { type CliIO, type Command, helpList } from "./command.ts";
import { pathExists, refuseFolder, writeFileAtomic } from "../util/atomic.ts";

const USAGE = `usage: deno task cli bench [--only NAME ...] [--quick] [--json] [--output FILE]
       deno task bench [...]     the same, with --output bench/out/results.jsonl

Runs the benchmarks of \`deno task bench\` on the current adapter (WebGPU when one answers, else the
cpu backend) and prints one JSON line per measurement (op, shape, ms, GFLOP/s or tokens/s, backend,
adapter), then a table on stderr.

options:
  --only NAME                a benchmark to run (repeatable, or comma-separated):
${helpList(BENCHMARKS, 29)};
                             default ${DEFAULT_BENCHMARKS.join(", ")} (the others take minutes)
  --quick                    smaller sizes (seconds instead of minutes)
  --json                     one JSON object {"adapter", "records": [...]} instead of JSON lines + table
  --output FILE              also write the records there as JSON lines (atomically; it replaces
                             an earlier run's results file; any other file only with --overwrite)
  --overwrite                replace an --output file that is not a results file
  -h, --help                 this text`;

const FLAGS = {
  only: { type: "list" },
  quick: { type: "boolean" },
  json: { type: "boolean" },
  output: { type: "string" },
  overwrite: { type: "boolean" },
} as const;

/** Whether `path`'s first line is a benchmark record (an earlier run's --output). */
async function isResultsFile(path: string): Promise<boolean> {
  let text = "";
  try { // its first line only (a large file is not read whole)
    const f = await Deno.open(path);
    try {
      const buf = new Uint8Array(64 * 1024);
      text = new TextDecoder().decode(buf.subarray(0, (await f.read(buf)) ?? 0));
    } finally {
      f.close();
    }
  } catch {
    return false;
  }
  try {
    const r = JSON.parse(text.slice(0, text.indexOf("\n") >>> 0));
    return typeof r === "object" && r !== null && ["op", "ms", "backend"].every((k) => k in r);
  } catch {
    return false;
  }
}

/** The `bench` command. */
export const command: Command = {
  summary: "run the benchmarks (matmul, attention, block, ...) as JSON lines",
  usage: USAGE,
  run: benchRun,
};

async function benchRun(args: string[], io: CliIO): Promise<void> {
  const v = parseFlags("bench", args, FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  // before minutes of benchmarks: never over a folder, nor someone's file unasked (a data file had been replaced)
  if (v.output) await refuseFolder(v.output);
  const existed = v.output ? await pathExists(v.output) : false;
  if (v.output && !v.overwrite && existed && !(await isResultsFile(v.output))) {
    throw new Deno.errors.AlreadyExists(
      `bench: --output ${v.output} exists and is not a benchmark results file; pass --overwrite to replace ` +
        `it, or choose another file`,
    );
  }
  const result = await runBenchmarks({
    only: v.only,
    quick: v.quick,
    onRecord: v.json ? undefined : (r) => io.stdout(JSON.stringify(r) + "\n"),
  });
  if (v.output) {
    // not over a file that appeared during the run (a results file there at the start is replaced)
    await writeFileAtomic(v.output, result.records.map((r) => JSON.stringify(r) + "\n").join(""), {
      replace: existed || v.overwrite,
    });
  }
  if (v.json) {
    return io.stdout(JSON.stringify({ adapter: result.adapter, records: result.records }) + "\n");
  }
  io.stderr(`\n${benchTable(result)}\n`);
}
