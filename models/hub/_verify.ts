/**
 * Private helper of `hub.ts`: re-hash the files of a cache snapshot against their blob names
 * (the hub's ETags: sha256 for LFS files, the git blob sha1 for the others).
 * @module
 */
import { basename, join } from "node:path";
import { HubError } from "./types.ts";
import { isSha256 } from "./_cache.ts";
import { gitBlobSha1, sha256File } from "./_http.ts";

/**
 * Check every file of `files` under `folder`. Files that are not links into `blobs/` (a local
 * folder, or a cache where links were not allowed) have no recorded hash and are skipped.
 * A mismatch deletes the blob and the snapshot entry (so the next download fetches it again) and
 * throws a `checksum` {@linkcode HubError} naming the file.
 *
 * @returns the number of files that were checked
 */
export async function verifySnapshot(folder: string, files: string[]): Promise<number> {
  let checked = 0;
  for (const f of files) {
    const path = join(folder, f);
    if (!(await Deno.lstat(path)).isSymlink) continue;
    const blob = await Deno.realPath(path);
    const etag = basename(blob);
    const isSha1 = /^[0-9a-f]{40}$/.test(etag);
    if (!isSha256(etag) && !isSha1) continue;
    const actual = isSha1 ? await gitBlobSha1(blob) : await sha256File(blob);
    if (actual !== etag) {
      await Deno.remove(blob);
      await Deno.remove(path);
      throw new HubError(
        "checksum",
        `Cannot verify ${path}: its ${isSha1 ? "git sha1" : "sha256"} is ${actual} but the hub announced ` +
          `${etag}; the corrupt blob was deleted, download the model again`,
      );
    }
    checked++;
  }
  return checked;
}
