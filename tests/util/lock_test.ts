import { join } from "node:path";
import { assert } from "../_assert.ts";
import { acquireLock, LOCK_FILE, type LockInfo, readLock } from "../../util/lock.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = new Deno.Command("true", { stdout: "null", stderr: "null" }).spawn();
  await child.status;
  return child.pid;
}

const lockOf = (info: Partial<LockInfo>) =>
  JSON.stringify({
    pid: 1,
    host: Deno.hostname(),
    started: "2026-12-05T11:00:00.000Z",
    command: "train",
    ...info,
  });

Deno.test("acquireLock() writes who holds the folder and release() removes it, once", async () => {
  await withDir(async (dir) => {
    const lock = await acquireLock(dir, { command: "train --config a.yaml" });
    assert.equal(lock.path, join(dir, LOCK_FILE));
    const info = await readLock(dir);
    assert.deepEqual(info, lock.info);
    assert.equal(info?.pid, Deno.pid);
    assert.equal(info?.host, Deno.hostname());
    assert.equal(info?.command, "train --config a.yaml");
    assert.ok(Math.abs(Date.parse(info!.started) - Date.now()) < 60_000, info!.started);
    await lock.release();
    await lock.release();
    assert.equal(await readLock(dir), null);
    // Free again, also through `await using`.
    {
      await using again = await acquireLock(dir);
      assert.ok(again.info.command.length > 0);
    }
    assert.equal(await readLock(dir), null);
  });
});

Deno.test("acquireLock() refuses a folder this process already holds, naming pid and file", async () => {
  await withDir(async (dir) => {
    const lock = await acquireLock(dir, { command: "train" });
    try {
      await assert.rejects(acquireLock(dir), (e: Error) => {
        assert.ok(e instanceof Deno.errors.Busy, String(e));
        assert.ok(!e.message.includes("\n"), e.message);
        assert.match(
          e.message,
          new RegExp(`^Cannot use ${dir}: it is in use by pid ${Deno.pid} \\(train\\)`),
        );
        assert.ok(e.message.includes(`since ${lock.info.started}`), e.message);
        assert.ok(e.message.includes(`remove ${join(dir, LOCK_FILE)} if it is gone`), e.message);
        return true;
      });
    } finally {
      await lock.release();
    }
  });
});

Deno.test("acquireLock() with wait_ms waits for a live holder of a named lock file, then takes it", async () => {
  await withDir(async (dir) => {
    const first = await acquireLock(dir, { name: "x.lock" });
    assert.ok((await Deno.stat(join(dir, "x.lock"))).isFile);
    const t0 = Date.now();
    setTimeout(() => first.release(), 200);
    const second = await acquireLock(dir, { name: "x.lock", wait_ms: 5000 });
    assert.ok(Date.now() - t0 >= 150, `took ${Date.now() - t0} ms`);
    // a short wait still ends in the one-line Busy naming the lock file
    const e = await acquireLock(dir, { name: "x.lock", wait_ms: 100 }).catch((e) => e);
    assert.ok(e instanceof Deno.errors.Busy && e.message.includes("(x.lock)"), String(e));
    await second.release();
    await assert.rejects(Deno.stat(join(dir, LOCK_FILE)), Deno.errors.NotFound);
  });
});

Deno.test("acquireLock() takes over the lock of a dead process and says so", async () => {
  await withDir(async (dir) => {
    const pid = await deadPid();
    await Deno.writeTextFile(join(dir, LOCK_FILE), lockOf({ pid }));
    const seen: [LockInfo, string][] = [];
    const lock = await acquireLock(dir, { onTakeover: (s, p) => seen.push([s, p]) });
    assert.equal(seen.length, 1);
    assert.equal(seen[0][0].pid, pid);
    assert.equal(seen[0][0].started, "2026-12-05T11:00:00.000Z");
    assert.equal(seen[0][1], join(dir, LOCK_FILE));
    assert.equal((await readLock(dir))?.pid, Deno.pid);
    await lock.release();
    // No temp or takeover files are left behind.
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), []);
  });
});

Deno.test({
  name: "acquireLock() takes over the lock of a zombie process (exited, not yet reaped)",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    // The child exits after its parent has exec'd into `sleep 5`, which never reaps it. (With
    // `sleep 0` the child could exit while `sh` still ran, and `sh` could reap it: a flaky test.)
    const parent = new Deno.Command("sh", {
      args: ["-c", "sleep 0.3 & echo $!; exec sleep 5"],
      stdout: "piped",
    })
      .spawn();
    const reader = parent.stdout.getReader();
    try {
      const pid = Number(new TextDecoder().decode((await reader.read()).value).trim());
      while (!/\) Z/.test(await Deno.readTextFile(`/proc/${pid}/stat`))) {
        await new Promise((r) => setTimeout(r, 10));
      }
      await withDir(async (dir) => {
        await Deno.writeTextFile(join(dir, LOCK_FILE), lockOf({ pid }));
        const seen: number[] = [];
        const lock = await acquireLock(dir, { onTakeover: (s) => seen.push(s.pid) });
        assert.deepEqual(seen, [pid]);
        await lock.release();
      });
    } finally {
      reader.releaseLock();
      parent.kill();
      await parent.stdout.cancel();
      await parent.status;
    }
  },
});

Deno.test("acquireLock() takes over an unreadable lock file left by a crash", async () => {
  await withDir(async (dir) => {
    const path = join(dir, LOCK_FILE);
    await Deno.writeTextFile(path, '{"pid": 12');
    const old = new Date(Date.now() - 60_000);
    await Deno.utime(path, old, old);
    await assert.rejects(
      readLock(dir),
      (e: Error) => e instanceof SyntaxError && e.message.includes(`Cannot parse ${path}`),
    );
    const seen: LockInfo[] = [];
    const lock = await acquireLock(dir, { onTakeover: (s) => seen.push(s) });
    assert.equal(seen.length, 1);
    assert.equal(seen[0].pid, 0);
    assert.ok(Math.abs(Date.parse(seen[0].started) - old.getTime()) < 1000, seen[0].started);
    assert.equal((await readLock(dir))?.pid, Deno.pid);
    await lock.release();
  });
});

Deno.test("acquireLock() waits on a lock file being written instead of taking it over", async () => {
  await withDir(async (dir) => {
    const path = join(dir, LOCK_FILE);
    await Deno.writeTextFile(path, ""); // just created by another acquireLock
    const writer = new Promise((r) => setTimeout(r, 300)).then(() =>
      Deno.writeTextFile(path, lockOf({ pid: Deno.pid, command: "writer" }))
    );
    await assert.rejects(acquireLock(dir), Deno.errors.Busy, `pid ${Deno.pid} (writer)`);
    await writer;
  });
});

Deno.test("acquireLock() refuses the lock of another host, which it cannot check", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      join(dir, LOCK_FILE),
      lockOf({ pid: await deadPid(), host: "elsewhere.example" }),
    );
    await assert.rejects(acquireLock(dir), (e: Error) => {
      assert.ok(e instanceof Deno.errors.Busy, String(e));
      assert.match(e.message, /on host elsewhere\.example since 2026-12-05T11:00:00\.000Z/);
      assert.match(e.message, /another host/);
      return true;
    });
  });
});

Deno.test("acquireLock() names the leftover of an interrupted takeover instead of removing it", async () => {
  await withDir(async (dir) => {
    const path = join(dir, LOCK_FILE);
    await Deno.writeTextFile(path, lockOf({ pid: await deadPid() }));
    await Deno.writeTextFile(`${path}.takeover`, "");
    const old = new Date(Date.now() - 60_000);
    await Deno.utime(`${path}.takeover`, old, old);
    await assert.rejects(acquireLock(dir), Deno.errors.Busy, `remove ${path}.takeover if no other run`);
    await Deno.remove(`${path}.takeover`);
    await (await acquireLock(dir)).release();
  });
});

Deno.test("release() leaves a lock that is no longer its own", async () => {
  await withDir(async (dir) => {
    const lock = await acquireLock(dir);
    const other = lockOf({ pid: 4242, command: "other" });
    await Deno.writeTextFile(lock.path, other);
    await lock.release();
    assert.equal(await Deno.readTextFile(lock.path), other);
  });
});

/** Run `n` processes that all wait for a start signal, then take the lock of `dir` and hold it 1 s. */
async function race(dir: string, n: number): Promise<{ code: number; out: string; err: string }[]> {
  const sync = await Deno.makeTempDir();
  const url = new URL("../../util/lock.ts", import.meta.url).href;
  const code = (i: number) => `
    const { acquireLock } = await import(${JSON.stringify(url)});
    await Deno.writeTextFile(${JSON.stringify(`${sync}/ready-${i}`)}, "");
    for (;;) {
      try { await Deno.stat(${
    JSON.stringify(`${sync}/go`)
  }); break; } catch { await new Promise((r) => setTimeout(r, 2)); }
    }
    try {
      const lock = await acquireLock(${JSON.stringify(dir)}, { command: "child ${i}" });
      console.log("won", Deno.pid);
      await new Promise((r) => setTimeout(r, 1000));
      await lock.release();
    } catch (e) {
      if (!(e instanceof Deno.errors.Busy)) throw e;
      console.error(e.message);
      Deno.exit(3);
    }`;
  try {
    const children = Array.from(
      { length: n },
      (_, i) =>
        new Deno.Command(Deno.execPath(), { args: ["eval", code(i)], stdout: "piped", stderr: "piped" })
          .spawn(),
    );
    while ([...Deno.readDirSync(sync)].length < n) await new Promise((r) => setTimeout(r, 10));
    await Deno.writeTextFile(`${sync}/go`, "");
    const dec = new TextDecoder();
    return (await Promise.all(children.map((c) => c.output()))).map((o) => ({
      code: o.code,
      out: dec.decode(o.stdout),
      err: dec.decode(o.stderr),
    }));
  } finally {
    await Deno.remove(sync, { recursive: true });
  }
}

function assertOneWinner(results: { code: number; out: string; err: string }[], dir: string): void {
  const winners = results.filter((r) => r.code === 0);
  const losers = results.filter((r) => r.code !== 0);
  assert.equal(winners.length, 1, JSON.stringify(results));
  const pid = /won (\d+)/.exec(winners[0].out)?.[1];
  assert.ok(pid, winners[0].out);
  for (const r of losers) {
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, new RegExp(`^Cannot use ${dir}: it is in use by pid ${pid} \\(child \\d+\\)`));
  }
}

Deno.test("acquireLock() lets exactly one of two racing processes win", async () => {
  await withDir(async (dir) => {
    assertOneWinner(await race(dir, 2), dir);
    assert.equal(await readLock(dir), null);
  });
});

Deno.test("acquireLock() lets exactly one of three processes take over the same stale lock", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(join(dir, LOCK_FILE), lockOf({ pid: await deadPid() }));
    assertOneWinner(await race(dir, 3), dir);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), []);
  });
});

Deno.test("acquireLock() clears a takeover file left by a process killed mid-takeover", async () => {
  await withDir(async (dir) => {
    const pid = await deadPid();
    await Deno.writeTextFile(join(dir, LOCK_FILE), lockOf({ pid }));
    await Deno.writeTextFile(
      join(dir, `${LOCK_FILE}.takeover`),
      JSON.stringify({ pid, host: Deno.hostname() }),
    );
    const lock = await acquireLock(dir);
    assert.equal((await readLock(dir))?.pid, Deno.pid);
    await lock.release();
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), []);
  });
});
