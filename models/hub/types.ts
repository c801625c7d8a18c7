/**
 * The one error class of the hub layer (re-exported by `hub.ts`): a state callers catch, e.g.
 * `loadModel` falling back to a preset when a repo cannot be fetched.
 * @module
 */

/**
 * Why a hub operation failed:
 * - `unauthorized`: 401/403, the token is missing, rejected or lacks access;
 * - `not_found`: 404, the repo, revision or file does not exist;
 * - `offline`: offline mode (`HF_HUB_OFFLINE=1` / `local_files_only`) and the file is not cached;
 * - `connection`: the hub could not be reached (or the connection dropped and retries ran out);
 * - `truncated`: the download ended short of the announced size (the partial file is kept to resume);
 * - `checksum`: the downloaded bytes do not hash to the announced sha256 (the blob is deleted);
 * - `http`: any other unexpected HTTP status or answer.
 */
export type HubErrorKind =
  | "unauthorized"
  | "not_found"
  | "offline"
  | "connection"
  | "truncated"
  | "checksum"
  | "http";

/**
 * A hub download or lookup that failed for a reason the caller may handle (retry, fall back to
 * another source, ask for a token). The message says what, where and how to fix it, and never
 * contains the token.
 *
 * @example
 * ```ts
 * import { HubError } from "./hub.ts";
 * const e = new HubError("not_found", "Cannot download x: not found", { status: 404 });
 * if (e.kind !== "not_found" || e.status !== 404) throw new Error("unexpected");
 * ```
 */
export class HubError extends Error {
  /** The reason, for callers that branch on it. */
  readonly kind: HubErrorKind;
  /** The HTTP status when the hub answered, else undefined. */
  readonly status?: number;

  /**
   * Creates the error, named `HubError`, keeping `cause` for the underlying failure.
   *
   * @param kind why it failed
   * @param message what, where and the fix
   * @param opts `status`: the HTTP status; `cause`: the underlying error
   */
  constructor(kind: HubErrorKind, message: string, opts: { status?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "HubError";
    this.kind = kind;
    this.status = opts.status;
  }
}
