import { assert } from "../_assert.ts";
import {
  copyFileAtomic,
  findTempLeftovers,
  isTempName,
  moveFileAtomic,
  tempPath,
  writeDirAtomic,
  writeFileAtomic,
  writeFileAtomicSync,
} from "../../util/atomic.ts";

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("writeFileAtomic() writes text, bytes and streamed content and leaves no temp file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeFileAtomic(`${dir}/a.txt`, "one");
    await writeFileAtomic(`${dir}/a.txt`, "two");
    await writeFileAtomic(`${dir}/b.bin`, new Uint8Array([1, 2, 3]));
    await writeFileAtomic(`${dir}/sub/c.bin`, async (f) => {
      await f.write(new Uint8Array([9]));
      await f.write(new Uint8Array([8]));
    });
    writeFileAtomicSync(`${dir}/d.txt`, "sync");
    assert.equal(await Deno.readTextFile(`${dir}/a.txt`), "two");
    assert.deepEqual([...await Deno.readFile(`${dir}/b.bin`)], [1, 2, 3]);
    assert.deepEqual([...await Deno.readFile(`${dir}/sub/c.bin`)], [9, 8]);
    assert.equal(await Deno.readTextFile(`${dir}/d.txt`), "sync");
    assert.deepEqual(names(dir), ["a.txt", "b.bin", "d.txt", "sub"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() keeps the old file and removes its temp file when the writer fails", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeFileAtomic(`${dir}/a.txt`, "old");
    await assert.rejects(
      writeFileAtomic(`${dir}/a.txt`, async (f) => {
        await f.write(new TextEncoder().encode("half"));
        throw new Error("disk full");
      }),
      /disk full/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/a.txt`), "old");
    assert.deepEqual(names(dir), ["a.txt"]);
    assert.deepEqual(await findTempLeftovers(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeDirAtomic() replaces a folder whole, keeps the old one when filling fails, and with replace: false one that filled meanwhile", async () => {
  const root = await Deno.makeTempDir();
  try {
    await writeDirAtomic(`${root}/m`, (t) => Deno.writeTextFile(`${t}/old.txt`, "1"));
    await assert.rejects(
      writeDirAtomic(`${root}/m`, async (t) => {
        await Deno.writeTextFile(`${t}/new.txt`, "2");
        throw new RangeError("NaN weights");
      }),
      RangeError,
    );
    assert.deepEqual(names(`${root}/m`), ["old.txt"]);
    assert.deepEqual(names(root), ["m"]);
    await writeDirAtomic(`${root}/m`, (t) => Deno.writeTextFile(`${t}/new.txt`, "2"));
    assert.deepEqual(names(`${root}/m`), ["new.txt"]);
    assert.deepEqual(names(root), ["m"]);
    // replace: false puts it where nothing or an empty folder is, and never over a folder that
    // filled while it was written (merge, download --output without --overwrite_output_dir)
    await Deno.mkdir(`${root}/empty`);
    await writeDirAtomic(`${root}/empty`, (t) => Deno.writeTextFile(`${t}/a.txt`, "1"), { replace: false });
    assert.deepEqual(names(`${root}/empty`), ["a.txt"]);
    await assert.rejects(
      writeDirAtomic(`${root}/late`, async (t) => {
        await Deno.writeTextFile(`${t}/ours.txt`, "2");
        await Deno.mkdir(`${root}/late`);
        await Deno.writeTextFile(`${root}/late/theirs.txt`, "3");
      }, { replace: false }),
      Deno.errors.AlreadyExists,
      "late: it appeared while this output was being made, and it is not replaced",
    );
    assert.deepEqual(names(`${root}/late`), ["theirs.txt"]);
    assert.deepEqual(names(root), ["empty", "late", "m"], "no temp folder left");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("copyFileAtomic() and moveFileAtomic() put whole files in place; leftovers are found by name", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/src`, "data");
    await copyFileAtomic(`${dir}/src`, `${dir}/out/copy`);
    assert.equal(await Deno.readTextFile(`${dir}/out/copy`), "data");
    await moveFileAtomic(`${dir}/src`, `${dir}/moved`);
    assert.equal(await Deno.readTextFile(`${dir}/moved`), "data");
    const stale = tempPath(`${dir}/step-3`);
    await Deno.mkdir(stale);
    assert.ok(isTempName(stale) && !isTempName(`${dir}/step-3`) && !isTempName("x.tmp"));
    assert.deepEqual(await findTempLeftovers(dir), [stale]);
    assert.deepEqual(await findTempLeftovers(`${dir}/missing`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() passes a file system error through unchanged and leaves nothing behind", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/file`, "");
    // a parent that is a file: the error comes from the file system, not from a temp-file mix-up
    await assert.rejects(writeFileAtomic(`${dir}/file/x.txt`, "a"), Deno.errors.AlreadyExists);
    assert.deepEqual(names(dir), ["file"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the atomic writers refuse a destination that is a folder, naming it, before writing anything", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const folder = `${dir}/out.gguf`;
    await Deno.mkdir(folder);
    await Deno.writeTextFile(`${dir}/src`, "x");
    const refused = {
      name: "IsADirectory",
      message: /^Cannot write .*out\.gguf: it is a folder; give a file path/,
    };
    await assert.rejects(() => writeFileAtomic(folder, "a"), refused);
    assert.throws(() => writeFileAtomicSync(folder, "a"), refused);
    await assert.rejects(() => copyFileAtomic(`${dir}/src`, folder), refused);
    await assert.rejects(() => moveFileAtomic(`${dir}/src`, folder), refused);
    assert.deepEqual(names(dir), ["out.gguf", "src"], "no temp file left");
    assert.deepEqual(names(folder), [], "the folder is untouched");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() writes through a link, refuses a pipe, and names the path, not its temp file, in an error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/real.txt`, "old");
    await Deno.symlink("real.txt", `${dir}/link.txt`);
    await writeFileAtomic(`${dir}/link.txt`, "new"); // the rename replaced the link with a file
    assert.ok((await Deno.lstat(`${dir}/link.txt`)).isSymlink, "the link stays");
    assert.equal(await Deno.readTextFile(`${dir}/real.txt`), "new");
    const fifo = new Deno.Command("mkfifo", { args: [`${dir}/pipe`] }).outputSync();
    if (fifo.success) {
      await assert.rejects(() => writeFileAtomic(`${dir}/pipe`, "x"), {
        name: "TypeError",
        message: /pipe: it is not a regular file/,
      });
      assert.ok((await Deno.lstat(`${dir}/pipe`)).isFifo, "the pipe stays");
    }
    await Deno.writeTextFile(`${dir}/file`, "");
    await assert.rejects(() => writeFileAtomic(`${dir}/file/x.txt`, "a"), (e: Error) => {
      assert.match(e.message, /^Cannot write .*file\/x\.txt: a folder on its path is a file; choose a path/);
      assert.doesNotMatch(e.message, /\.tmp-/);
      return true;
    });
    assert.deepEqual(
      names(dir),
      ["file", "link.txt", "pipe", "real.txt"].filter((n) => n !== "pipe" || fifo.success),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic / moveFileAtomic with replace false never replace a file that appeared meanwhile", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = `${dir}/out.jsonl`;
    // the output did not exist when the command checked; another program wrote it before the end
    await assert.rejects(
      writeFileAtomic(p, async (f) => {
        await Deno.writeTextFile(p, "theirs\n");
        await f.write(new TextEncoder().encode("ours\n"));
      }, { replace: false }),
      Deno.errors.AlreadyExists,
      "it appeared while this output was being made, and it is not replaced",
    );
    assert.equal(await Deno.readTextFile(p), "theirs\n");
    assert.deepEqual(await findTempLeftovers(dir), []);
    await Deno.writeTextFile(`${dir}/src`, "new\n");
    await assert.rejects(moveFileAtomic(`${dir}/src`, p, { replace: false }), Deno.errors.AlreadyExists);
    assert.equal(await Deno.readTextFile(p), "theirs\n");
    // a free path is written; the default still replaces
    await writeFileAtomic(`${dir}/free.txt`, "a\n", { replace: false });
    assert.equal(await Deno.readTextFile(`${dir}/free.txt`), "a\n");
    await writeFileAtomic(p, "ours\n");
    assert.equal(await Deno.readTextFile(p), "ours\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
