/** parseFlags(): spellings, types, negatives, lists, defaults, required flags, choices, hints, help. */
import { parseFlags } from "../../util/flags.ts";
import { assert } from "../_assert.ts";
import { closest } from "../../util/problems.ts";
import { TRAINING_CONFIG_KEYS } from "../../training/config.ts";

const SPECS = {
  model: { type: "string" },
  max_new_tokens: { type: "int", min: 1 },
  learning_rate: { type: "number", min: 0, exclusiveMin: true },
  temperature: { type: "number" },
  top_k: { type: "int", min: 0, max: 100, default: 50 },
  greedy: { type: "boolean" },
  stop: { type: "list" },
  backend: { type: "string", choices: ["webgpu", "cpu", "auto"], default: "auto" },
  config: { type: "string", short: "c" },
} as const;

const parse = (args: string[]) => parseFlags("generate", args, SPECS);

/** Assert parsing `args` throws `cls` with one line matching `re` and the --help pointer. */
function fails(args: string[], cls: ErrorConstructor, re: RegExp): void {
  assert.throws(() => parse(args), (e: Error) => {
    assert.ok(e instanceof cls, `${e.name}: ${e.message}`);
    assert.match(e.message, /^generate: /);
    assert.match(e.message, re);
    assert.match(e.message, /\(see `deno task cli generate --help`\)$/);
    assert.ok(!e.message.includes("\n"), e.message);
    return true;
  });
}

Deno.test("parseFlags() reads underscore names, hyphen aliases and --name=value", () => {
  const v = parse(["--max_new_tokens", "8", "--learning-rate=3e-4", "--model=org/name", "--greedy"]);
  assert.equal(v.max_new_tokens, 8);
  assert.equal(v.learning_rate, 3e-4);
  assert.equal(v.model, "org/name");
  assert.equal(v.greedy, true);
  assert.equal(v.help, false);
  assert.equal(parse(["--max-new-tokens=2"]).max_new_tokens, 2);
});

Deno.test("parseFlags() gives defaults, false booleans and undefined for absent flags", () => {
  const v = parse([]);
  assert.deepEqual(
    { ...v },
    {
      help: false,
      model: undefined,
      max_new_tokens: undefined,
      learning_rate: undefined,
      temperature: undefined,
      top_k: 50,
      greedy: false,
      stop: undefined,
      backend: "auto",
      config: undefined,
    },
  );
});

Deno.test("parseFlags() reads a negative number after a flag as its value", () => {
  assert.equal(parse(["--temperature", "-2"]).temperature, -2);
  assert.equal(parse(["--temperature", "-.5"]).temperature, -0.5);
  assert.equal(parse(["--temperature=-1e-3"]).temperature, -1e-3);
  assert.equal(parse(["-c", "-1"]).config, "-1");
  assert.equal(parse(["--model", "-3", "--greedy"]).model, "-3");
  fails(["--learning_rate", "-2"], RangeError, /--learning_rate -2 is out of range: must be > 0/);
  // not a number: still a flag-looking word, so it needs the = form
  fails(["--model", "-x"], TypeError, /--model is followed by -x, not a value; .* as --model=-x/);
  fails(["--model", "--greedy"], TypeError, /--model needs a value/);
  assert.equal(parse(["--model=-x"]).model, "-x");
});

Deno.test("parseFlags() keeps a value as typed (no renaming of hyphens in values)", () => {
  assert.equal(parse(["--model", "my-org/some-model"]).model, "my-org/some-model");
  assert.equal(parse(["--model=a-b_c"]).model, "a-b_c");
});

Deno.test("parseFlags() collects a repeated list flag in order", () => {
  assert.deepEqual(parse(["--stop", "a", "--stop=b,c", "--stop", "-"]).stop, ["a", "b,c", "-"]);
  assert.deepEqual(parse(["--stop", "x"]).stop, ["x"]);
});

Deno.test("parseFlags() takes the last of a value flag given twice, as argparse does, and says so", () => {
  const notes: string[] = [];
  const v = parseFlags(
    "generate",
    ["--model", "a", "--max-new-tokens", "5", "--model=b", "--max_new_tokens", "2"],
    SPECS,
    {
      warn: (l) => notes.push(l),
    },
  );
  assert.equal(v.model, "b");
  assert.equal(v.max_new_tokens, 2);
  assert.deepEqual(notes, [
    "generate: --model is given more than once; the last value, b, is used",
    "generate: --max_new_tokens is given more than once; the last value, 2, is used",
  ]);
  notes.length = 0;
  parseFlags("generate", ["--greedy", "--greedy", "--stop", "a", "--stop", "b"], SPECS, {
    warn: (l) => notes.push(l),
  });
  assert.deepEqual(notes, [], "a switch or a list flag twice is no news");
  // but two config files would have to merge: refused (the first had been dropped with that note)
  fails(["-c", "a.yaml", "--config", "b.yaml"], TypeError, /--config is given more than once; give one file/);
  assert.deepEqual(parse(["-c", "a.yaml", "-c", "b.yaml", "--help"]), { help: true }, "--help first");
});

Deno.test("parseFlags() refuses an empty path, model or config (an unset shell variable had been no flag at all)", () => {
  fails(["--model", ""], TypeError, /--model is empty; give a path or a hub id/);
  fails(["--config="], TypeError, /--config is empty; give a path/);
  assert.equal(parse(["--stop", ""]).stop?.[0], "", "other flags keep an empty value");
});

Deno.test("parseFlags() checks types: TypeError for the wrong kind, RangeError out of range", () => {
  fails(["--max_new_tokens", "x"], TypeError, /--max_new_tokens x is not an integer/);
  fails(["--max_new_tokens", "2.5"], TypeError, /--max_new_tokens 2\.5 is not an integer/);
  fails(["--max_new_tokens", "1e-3"], TypeError, /--max_new_tokens 1e-3 is not an integer/);
  assert.equal(parse(["--max_new_tokens", "2e3"]).max_new_tokens, 2000); // an integer written as a number
  fails(["--temperature", "warm"], TypeError, /--temperature warm is not a number/);
  fails(["--temperature="], TypeError, /--temperature "" is not a number/);
  fails(["--max_new_tokens", "0"], RangeError, /--max_new_tokens 0 is out of range: must be >= 1/);
  fails(["--top_k", "101"], RangeError, /--top_k 101 is out of range: must be <= 100/);
  fails(
    ["--backend", "cpus"],
    RangeError,
    /--backend cpus is not one of webgpu, cpu, auto; did you mean cpu\?/,
  );
  fails(["--greedy=yes"], TypeError, /--greedy takes no value/);
  fails(["--model"], TypeError, /--model needs a value/);
  fails(["-c"], TypeError, /--config needs a value/);
});

Deno.test("parseFlags() names an unknown flag with a did-you-mean hint", () => {
  fails(
    ["--max_new_token", "8"],
    TypeError,
    /^generate: unknown flag --max_new_token; did you mean --max_new_tokens\? \(see/,
  );
  fails(["--lerning-rate=1"], TypeError, /unknown flag --lerning-rate; did you mean --learning_rate\?/);
  fails(["--no_such_flag"], TypeError, /^generate: unknown flag --no_such_flag \(see/);
  fails(["-q"], TypeError, /unknown flag -q/);
  fails(["stray"], TypeError, /unexpected argument "stray"/);
});

Deno.test("parseFlags() names every missing required flag at once", () => {
  const specs = {
    model: { type: "string", required: true },
    output: { type: "string", required: true },
  } as const;
  assert.throws(() => parseFlags("merge", [], specs), /^TypeError: merge: missing --model, --output \(see/);
  const v = parseFlags("merge", ["--model", "m", "--output", "o"], specs);
  const model: string = v.model; // required: typed as present
  assert.equal(model, "m");
});

Deno.test("parseFlags() answers --help and -h without checking values", () => {
  assert.equal(parse(["--help"]).help, true);
  assert.equal(parse(["-h", "--max_new_tokens", "0"]).help, true);
  const required = { model: { type: "string", required: true } } as const;
  assert.equal(parseFlags("x", ["-h"], required).help, true);
});

Deno.test("parseFlags() lets a mistake in the specs through as it is", () => {
  assert.throws(
    () => parseFlags("x", [], { config: { type: "string", short: "cc" } }),
    (e: Error) => !e.message.startsWith("x:"),
  );
});

Deno.test("closest() prefers a name the word ends or starts (gpu: webgpu, not the nearer cpu)", () => {
  assert.equal(closest("gpu", ["auto", "webgpu", "cpu"]), "webgpu");
  assert.equal(
    closest("batch_size", TRAINING_CONFIG_KEYS), // the first in their order: train before eval (the shortest had won)
    "per_device_train_batch_size",
  );
  assert.equal(closest("learnig_rate", ["learning_rate", "weight_decay"]), "learning_rate");
  assert.equal(closest("xy", ["xyz", "abc"]), "xyz"); // two letters: by edit distance alone
});
