/**
 * Benchmark: stream a large JSON Lines file with `streamJsonl` and check that memory stays
 * bounded. Generates `--mb` megabytes (default 1024, about 1 GB) of ~1 kB records in a temp dir,
 * streams them, and prints one JSON line:
 * `{"bench":"jsonl_stream","bytes":...,"records":...,"peak_rss_mb":...,"base_rss_mb":...,"ms":...,"mb_per_s":...}`.
 *
 * Run: `deno run -A bench/data_stream.ts [--mb 1024]`. Never run from tests.
 * @module
 */
import { streamJsonl, writeJsonl } from "../data/jsonl.ts";

const arg = Deno.args.indexOf("--mb");
const mb = arg >= 0 ? Number(Deno.args[arg + 1]) : 1024;
if (!(mb > 0)) {
  throw new RangeError(`Cannot run the benchmark: --mb ${Deno.args[arg + 1]} is not a positive number`);
}

const dir = await Deno.makeTempDir({ prefix: "fledge-bench-" });
const path = `${dir}/big.jsonl`;
try {
  const filler = "lorem ipsum dolor sit amet ".repeat(36); // ~1 kB per record
  const target = mb * 1e6;
  const records = Math.ceil(target / (filler.length + 60));
  await writeJsonl(
    path,
    (function* () {
      for (let i = 0; i < records; i++) yield { id: i, text: filler, label: i % 7 };
    })(),
  );
  const bytes = (await Deno.stat(path)).size;

  const base = Deno.memoryUsage().rss;
  let peak = base;
  const sampler = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 20);
  const t0 = performance.now();
  let n = 0;
  let chars = 0;
  for await (const r of streamJsonl(path)) {
    n++;
    chars += (r.text as string).length;
  }
  const ms = performance.now() - t0;
  clearInterval(sampler);
  peak = Math.max(peak, Deno.memoryUsage().rss);
  if (n !== records || chars !== records * filler.length) {
    throw new Error(
      `Benchmark read ${n} records / ${chars} chars, expected ${records} / ${records * filler.length}`,
    );
  }
  console.log(JSON.stringify({
    bench: "jsonl_stream",
    bytes,
    records: n,
    peak_rss_mb: Math.round(peak / 1e6),
    base_rss_mb: Math.round(base / 1e6),
    ms: Math.round(ms),
    mb_per_s: Math.round(bytes / 1e3 / ms),
  }));
} finally {
  await Deno.remove(dir, { recursive: true });
}
