/**
 * The dispatcher `cli.ts`: the command list, every command's `--help` and bad flag through
 * `main()`, and the real process's exit codes (0, 1, 2) with one stderr line and no stack trace.
 */
import { join } from "node:path";
import { assert } from "../_assert.ts";
import { assertFails, cli, cliProcess } from "./_cli.ts";
import { withoutFlags } from "../../cli/_config_args.ts";

/** The command names `deno task cli --help` lists. */
async function commands(): Promise<string[]> {
  const { out } = await cli(["--help"]);
  const block = out.split("\ncommands:\n")[1].split("\n\n")[0];
  return block.split("\n").map((l) => l.trim().split(/\s+/)[0]);
}

Deno.test("main() with no arguments or --help lists every command", async () => {
  const none = await cli([]);
  assert.equal(none.code, 0);
  assert.ok(none.out.startsWith("usage: deno task cli <command>"), none.out);
  const listed = await commands();
  for (const c of ["train", "sft", "generate", "download", "merge", "demo", "info"]) {
    assert.ok(listed.includes(c), `${c} in ${listed.join(", ")}`);
  }
  assert.equal((await cli(["-h"])).out, none.out);
  assert.equal(none.err, "");
});

Deno.test("main() prints usage: deno task cli <command> for every command's --help, -h and help <command>", async () => {
  for (const name of await commands()) {
    for (const args of [[name, "--help"], [name, "-h"], ["help", name]]) {
      const r = await cli(args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.err}`);
      assert.ok(r.out.startsWith(`usage: deno task cli ${name}`), `${args.join(" ")}: ${r.out}`);
      assert.equal(r.err, "");
      // read in a terminal: a list joined into one line had run to 311 characters
      const long = r.out.split("\n").filter((l) => l.length > 120);
      assert.deepEqual(long, [], `${name} --help: lines over 120 characters`);
    }
  }
});

Deno.test("main() answers a bad flag of every command with one stderr line naming it and code 2", async () => {
  for (const name of await commands()) {
    const r = await cli([name, "--no_such_flag"]);
    assertFails(
      r,
      2,
      new RegExp(`^fledge: ${name}: unknown flag --no_such_flag .*deno task cli ${name} --help`),
    );
    assert.equal(r.out, "");
  }
});

Deno.test("recipe, queue and config without their name or subcommand exit 2 with one line (they had printed the usage and exited 0)", async () => {
  for (
    const [cmd, re] of [
      ["recipe", /^fledge: recipe: missing the recipe name; write `deno task cli recipe summarization\|/],
      ["queue", /^fledge: queue: missing the subcommand; write `deno task cli queue submit\|work/],
      ["config", /^fledge: config: missing the subcommand; write `deno task cli config validate\|/],
      ["data", /^fledge: data: missing the subcommand/],
    ] as const
  ) {
    assertFails(await cli([cmd]), 2, re);
  }
});

Deno.test("main() rejects an unknown command in one line with a hint and code 2", async () => {
  assertFails(await cli(["trian"]), 2, /unknown command "trian"; did you mean train\?/);
  assertFails(
    await cli(["frobnicate", "--x"]),
    2,
    /unknown command "frobnicate" \(commands: train, sft, .*generate/,
  );
  // a recipe by its deno task's name (train:cnn), and an eval of a folder that does not exist (it had
  // said "not a recipe's run folder; give --task")
  const cnn =
    /unknown recipe "cnn"; deno task train:cnn runs recipe summarization \(its runs are runs\/summarization/;
  assertFails(await cli(["recipe", "cnn"]), 2, cnn);
  assertFails(await cli(["eval", "--recipe", "cnn"]), 2, cnn);
  assertFails(
    await cli(["eval", "--model", "runs/no-such-run"]),
    2,
    /eval: --model runs\/no-such-run does not exist/,
  );
});

Deno.test("main() joins a multi-line error into one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fledge-cli-" });
  try {
    const cfg = join(dir, "two.yaml");
    await Deno.writeTextFile(cfg, "model: tiny\nlearning_rate: -1\nmax_steps: -3\n");
    const r = await cli(["train", "--config", cfg]);
    assertFails(r, 2, /two\.yaml: 2 problems: - \S.* - \S/);
    assert.match(r.err, /learning_rate: must be >= 0/);
    assert.match(r.err, /max_steps: must be >= 1/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno run cli.ts: --help exits 0; a bad flag or config exits 2 with one line", async () => {
  const help = await cliProcess(["generate", "--help"]);
  assert.equal(help.code, 0, help.err);
  assert.ok(help.out.startsWith("usage: deno task cli generate"), help.out);
  assertFails(
    await cliProcess(["train", "--lerning_rate", "1e-4"]),
    2,
    /^fledge: train: unknown flag --lerning_rate; did you mean --learning_rate\? \(see `deno task cli train --help`\)$/,
  );
  const dir = await Deno.makeTempDir({ prefix: "fledge-cli-" });
  try {
    const bad = join(dir, "cli-bad.yaml");
    await Deno.writeTextFile(bad, "model: tiny\nlearning_rate: -1\n");
    assertFails(
      await cliProcess(["train", "--config", bad]),
      2,
      /cli-bad\.yaml.*learning_rate: must be >= 0/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno run cli.ts: a hub that does not answer exits 1 with one line", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close(); // nothing listens there now
  const cache = await Deno.makeTempDir({ prefix: "fledge-cli-cache-" });
  try {
    const r = await cliProcess(["generate", "--model", "fledge-test/absent", "--input_ids", "1"], {
      HF_ENDPOINT: `http://127.0.0.1:${port}`,
      HF_HUB_CACHE: cache,
      HF_HUB_OFFLINE: undefined,
    });
    assertFails(r, 1, /fledge-test\/absent.*HF_ENDPOINT/);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("withoutFlags() drops value flags in every spelling, and only those (the resume hints)", () => {
  const args = ["--a_b", "1", "--resume-from-checkpoint=true", "--output_dir", "x", "--output_dirs", "y"];
  assert.deepEqual(
    withoutFlags([...args, "--overwrite_output_dir", "true", "z"], [
      "resume_from_checkpoint",
      "output_dir",
      "overwrite_output_dir",
    ]),
    ["--a_b", "1", "--output_dirs", "y", "z"],
  );
});
