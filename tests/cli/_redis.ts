/**
 * Test helper: a redis-server of the test's own on a free port (Debian's `redis-server`, installed
 * by `.ci/run`), never one assumed to be running.
 * @module
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Start a redis-server of our own on a free port in `dir` (`args`: more of its flags); null when none is installed. */
export async function startRedis(
  dir: string,
  args: string[] = [],
): Promise<{ url: string; stop: () => Promise<void> } | null> {
  try {
    await new Deno.Command("redis-server", { args: ["--version"], stdout: "null" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const p = new Deno.Command("redis-server", {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      ...args,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const t0 = Date.now();
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch (e) {
      if (Date.now() - t0 > 10_000) throw new Error(`redis-server did not start on port ${port}: ${e}`);
      await sleep(50);
    }
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      p.kill("SIGTERM");
      await p.status;
    },
  };
}

/** Whether Debian's `redis-server` is installed. */
export const HAS_REDIS: boolean = await new Deno.Command("redis-server", {
  args: ["--version"],
  stdout: "null",
}).output()
  .then(() => true, () => false);
