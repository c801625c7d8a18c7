/**
 * Helpers of the CLI tests: the real entry point `main()` in-process with captured output, and
 * `deno run -A cli.ts` as a subprocess.
 * @module
 */
import { main } from "../../cli.ts";
import { assert, ROOT } from "../_assert.ts";

/** What a CLI run returned and printed. */
export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** `main(args)` in-process, capturing stdout and stderr. */
export async function cli(args: string[]): Promise<CliRun> {
  let out = "", err = "";
  const code = await main(args, { stdout: (s) => out += s, stderr: (s) => err += s });
  return { code, out, err };
}

/** `deno run -A cli.ts ...args` as a subprocess in `cwd`; `env` is added to (or, for undefined, removed from) this process's. */
export async function cliProcess(
  args: string[],
  env: Record<string, string | undefined> = {},
  cwd: string = ROOT,
): Promise<CliRun> {
  const vars: Record<string, string> = { ...Deno.env.toObject() };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete vars[k];
    else vars[k] = v;
  }
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}/cli.ts`, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    clearEnv: true,
    env: vars,
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/** Assert a run failed with `code` and exactly one stderr line `fledge: ...` matching `re`. */
export function assertFails(r: CliRun, code: 1 | 2, re: RegExp): void {
  const lines = r.err.trimEnd().split("\n");
  assert.equal(r.code, code, r.err);
  assert.equal(lines.length, 1, `one stderr line: ${r.err}`);
  assert.match(lines[0], /^fledge: /);
  assert.match(lines[0], re);
  assert.doesNotMatch(r.err, /^\s+at /m, "no stack trace");
}
