import { assert } from "../_assert.ts";
import { parseJson, readJsonFile } from "../../util/json.ts";
import { mulberry32 } from "../../util/random.ts";

/** The SyntaxError message of parsing `text` as `f.json`. */
function failure(text: string): string {
  try {
    parseJson(text, "f.json");
  } catch (e) {
    assert.ok(e instanceof SyntaxError, String(e));
    assert.ok(!e.message.includes("\n"), `not one line: ${e.message}`);
    return e.message;
  }
  throw new Error(`parsed: ${JSON.stringify(text)}`);
}

Deno.test("parseJson() names line and column of a bad token mid-file", () => {
  const text = '{\n  "a": 1,\n  "b": [1, 2, x],\n  "c": 3\n}\n';
  assert.equal(
    failure(text),
    "Cannot parse f.json: unexpected token 'x' at line 3, column 15; fix the JSON or restore the file",
  );
  // Errors V8 reports with a position, computed the same way.
  assert.match(
    failure('{\n "a": 1,\n}'),
    /^Cannot parse f\.json: expected double-quoted .* at line 3, column 1;/,
  );
  assert.match(
    failure('{"a": 1}\n\n  ]'),
    /: unexpected non-whitespace character after JSON at line 3, column 3;/,
  );
  assert.match(
    failure('[\n "tab\there"]'),
    /: bad control character in string literal .* at line 2, column 6;/,
  );
  assert.match(failure("[\n  tru ]"), /: unexpected token ' ' at line 2, column 6;/);
  assert.match(failure("[1, \u0001]"), /: unexpected token '\\u0001' at line 1, column 5;/);
  // A snippet of the text in V8's message is not taken for a position.
  assert.match(
    failure('[1, "at position 1", x]'),
    /: unexpected token 'x' at line 1, column 22;/,
  );
});

Deno.test("parseJson() reports a truncated file at its end", () => {
  assert.equal(
    failure('{\n  "a": [1, 2,\n'),
    "Cannot parse f.json: unexpected end of JSON input at line 2, column 14: it ends early (truncated?); " +
      "fix the JSON or restore the file",
  );
  assert.match(
    failure('{"a": "unterminated'),
    /: unterminated string in JSON at line 1, column 20: it ends early/,
  );
  assert.match(failure("[1, 2\n\n"), /: expected ',' or ']' .* at line 1, column 6: it ends early/);
});

Deno.test("parseJson() says a file is empty", () => {
  assert.equal(failure(""), "Cannot parse f.json: the file is empty; fix the JSON or restore the file");
  assert.match(failure(" \n\t"), /^Cannot parse f\.json: the file holds only white space;/);
});

Deno.test("parseJson() reads valid JSON, ignoring a byte order mark", () => {
  assert.deepEqual(parseJson('{"a": [1, "x", null]}', "f.json"), { a: [1, "x", null] });
  assert.deepEqual(parseJson('\ufeff{"a": 1}', "f.json"), { a: 1 });
  // Deep nesting: the position finder is iterative.
  const deep = "[".repeat(50_000) + "x";
  assert.match(failure(deep), /unexpected token 'x' at line 1, column 50001;/);
});

Deno.test("readJsonFile() reads a file and names it in errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/config.json`;
    await Deno.writeTextFile(path, '{"vocab_size": 32}\n');
    assert.deepEqual(await readJsonFile(path), { vocab_size: 32 });
    await Deno.writeTextFile(path, '{"vocab_size": 32,\n "x": }\n');
    await assert.rejects(readJsonFile(path), {
      name: "SyntaxError",
      message:
        `Cannot parse ${path}: unexpected token '}' at line 2, column 7; fix the JSON or restore the file`,
    });
    await assert.rejects(readJsonFile(`${dir}/missing.json`), (e: Error) => {
      assert.ok(e instanceof Deno.errors.NotFound, String(e));
      assert.ok(e.message.includes(`${dir}/missing.json`), e.message);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseJson() points at the character V8 names, on random corruptions of a JSON file", () => {
  const rand = mulberry32(7);
  const pick = (n: number) => Math.floor(rand() * n);
  const base = JSON.stringify(
    { a: [1, -2.5e3, 'x"y\\', true, false, null, { b: {}, c: [] }], "k k": "v\n" },
    null,
    1,
  );
  const alphabet = ' \n{}[],:"\\-0123456789.eE+tfnrulsax';
  for (let t = 0; t < 3000; t++) {
    let s = base;
    for (let j = pick(3); j >= 0; j--) {
      const p = pick(s.length + 1), ch = alphabet[pick(alphabet.length)];
      s = [
        s.slice(0, p) + ch + s.slice(p),
        s.slice(0, p) + s.slice(p + 1),
        s.slice(0, p) + ch + s.slice(p + 1),
      ][pick(3)];
    }
    let message: string, v8: string;
    try {
      parseJson(s, "f.json");
      continue;
    } catch (e) {
      message = (e as Error).message;
      v8 = ((e as Error).cause as Error).message;
    }
    const where = /at line (\d+), column (\d+)/.exec(message);
    assert.ok(where, message);
    const [line, column] = [Number(where[1]), Number(where[2])];
    const token = /unexpected token '(.)'/.exec(message);
    if (token) {
      assert.equal(s.split("\n")[line - 1][column - 1], token[1], `${JSON.stringify(s)}: ${message}`);
    }
    const lc = /\(line (\d+) column (\d+)\)/.exec(v8);
    if (lc && !message.includes("ends early")) assert.deepEqual([line, column], [+lc[1], +lc[2]], message);
  }
});
