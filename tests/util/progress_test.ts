import { assert } from "../_assert.ts";
import { createProgress } from "../../util/progress.ts";
import { formatBytes, formatDuration, formatMetric } from "../../util/format.ts";

Deno.test("download progress prints one line per update with bytes, rate and ETA when not a TTY", async () => {
  const code = `
    import { createProgress } from "${new URL("../../util/progress.ts", import.meta.url).href}";
    const p = createProgress("Downloading org/x/model.safetensors", { total: 2_000_000, start: 500_000, unit: "bytes", enabled: true });
    p.add(1000);
    p.add(1_499_000);
    p.done();
    createProgress("silent", { enabled: false }).done();`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stderr: "piped",
    stdout: "piped",
  }).output();
  const lines = new TextDecoder().decode(out.stderr).trim().split("\n");
  assert.equal(out.code, 0, lines.join("\n"));
  assert.equal(lines.length, 2, lines.join("\n"));
  assert.match(
    lines[0],
    /^Downloading org\/x\/model\.safetensors: 501\.0 kB \/ 2\.0 MB \(25%\), .*\/s, ETA /,
  );
  assert.match(lines[1], /2\.0 MB \/ 2\.0 MB \(100%\), .*\/s, in /);
  assert.ok(!lines.some((l) => l.includes("\r")));
});

Deno.test("createProgress() rewrites one line in place on a TTY and counts steps with a unit", () => {
  const out: string[] = [];
  const p = createProgress("train", {
    total: 4,
    unit: "steps",
    tty: true,
    interval_ms: 0,
    write: (s) => out.push(s),
  });
  p.update(1, "loss 3.0000");
  p.update(2);
  p.done();
  assert.equal(out.length, 3);
  assert.ok(out.every((l) => l.startsWith("\r")), JSON.stringify(out));
  assert.ok(out[0].endsWith("loss 3.0000\x1b[K"), JSON.stringify(out[0]));
  assert.match(out[0], /train: 1 \/ 4 steps \(25%\), [\d.]+ steps\/s, ETA \S+, loss 3\.0000/);
  // the last detail is kept until a new one comes
  assert.match(out[1], /2 \/ 4 steps \(50%\).*loss 3\.0000/);
  assert.ok(out[2].endsWith("\n") && out[2].includes(", in "));
});

Deno.test("createProgress() shows at most one update per interval, and the final line always", () => {
  const out: string[] = [];
  const p = createProgress("x", { tty: false, interval_ms: 60_000, write: (s) => out.push(s) });
  for (let i = 0; i < 100; i++) p.add(1);
  p.done();
  assert.equal(out.length, 2, out.join(""));
  assert.match(out[1], /^x: 100, .*, in \d+s\n$/);
});

Deno.test("format helpers spell bytes, durations and metrics one way", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(999), "999 B");
  assert.equal(formatBytes(1000), "1.0 kB");
  assert.equal(formatBytes(2.5e9), "2.5 GB");
  assert.equal(formatDuration(0.4), "0s");
  assert.equal(formatDuration(59.6), "1m00s");
  assert.equal(formatDuration(3599), "59m59s");
  assert.equal(formatDuration(7260), "2h01m");
  assert.equal(formatDuration(NaN), "?");
  assert.equal(formatMetric(null), "");
  assert.equal(formatMetric(1.5), "1.5000");
  assert.equal(formatMetric(-2e-5), "-2.000e-5");
});
