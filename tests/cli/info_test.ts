/** `deno task cli info` through `main()`: the table, `--json`, a bad backend. */
import { assert } from "../_assert.ts";
import { webgpu } from "../_check.ts";
import { assertFails, cli } from "./_cli.ts";

Deno.test("info prints the cpu backend as a table and as JSON", async () => {
  const table = await cli(["info", "--backend", "cpu"]);
  assert.equal(table.code, 0, table.err);
  assert.match(table.out, /^backend {2}cpu\nadapter {2}.+\n/);
  const json = await cli(["info", "--json", "--backend=cpu"]);
  assert.equal(json.code, 0, json.err);
  assert.equal(JSON.parse(json.out).backend, "cpu");
});

Deno.test("info on webgpu names the matmul kernels per product shape and where the choice came from", async () => {
  if (!await webgpu()) return;
  const table = await cli(["info", "--backend", "webgpu"]);
  assert.equal(table.code, 0, table.err);
  assert.match(
    table.out,
    /^matmul {3}gemm \S+, thin \S+, narrow \S+, gemv \S+, small \S+ \((default|disk|memory|measured)\)$/m,
  );
  const json = await cli(["info", "--json", "--backend=webgpu"]);
  assert.match(JSON.parse(json.out).matmul, /^gemm (reg|tex|tile):/);
});

Deno.test("info rejects a bad backend with a hint, exit code 2", async () => {
  assertFails(
    await cli(["info", "--backend", "cpus"]),
    2,
    /info: --backend cpus is not one of webgpu, cpu, auto; did you mean cpu\?/,
  );
  assertFails(await cli(["info", "--json=1"]), 2, /info: --json takes no value/);
});
