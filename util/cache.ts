/**
 * Where fledge keeps what it works out once per machine: the base models the recipes pre-train and
 * the kernel tunings per adapter. `$FLEDGE_CACHE_DIR` when set, else `$XDG_CACHE_HOME/fledge`,
 * else `~/.cache/fledge`.
 *
 * @module
 */
import { join } from "node:path";

/**
 * The cache folder (not created here), or null when none of `FLEDGE_CACHE_DIR`, `XDG_CACHE_HOME`
 * and `HOME` is set or readable (no env permission).
 *
 * @example
 * ```ts
 * import { fledgeCacheDir } from "./cache.ts";
 * const dir = fledgeCacheDir(); // e.g. "/home/me/.cache/fledge"
 * if (dir !== null && !dir.length) throw new Error("empty");
 * ```
 */
export function fledgeCacheDir(): string | null {
  try {
    const own = Deno.env.get("FLEDGE_CACHE_DIR");
    if (own) return own;
    const xdg = Deno.env.get("XDG_CACHE_HOME"), home = Deno.env.get("HOME");
    if (xdg) return join(xdg, "fledge");
    if (home) return join(home, ".cache", "fledge");
    return null;
  } catch {
    return null; // no env permission
  }
}
