/**
 * A local stand-in for the Hugging Face hub, for tests: `Deno.serve` on 127.0.0.1 (port 0) that
 * answers like huggingface.co for
 * - `GET /api/models/{id}/revision/{rev}` and `/api/datasets/...` (`sha`, `siblings[].rfilename`);
 * - `HEAD`/`GET /{id}/resolve/{rev}/{file}` and `/datasets/{id}/resolve/...`: small files answer
 *   200 with `ETag` = git blob sha1; LFS files (`.safetensors`, `.parquet`, `.bin`) answer 302 to a
 *   second server (another origin, like the CDN) with `X-Linked-Etag` = sha256 and `X-Linked-Size`;
 *   every answer carries `X-Repo-Commit`; 404s carry `X-Error-Code` like the hub;
 * - `Range: bytes=N-` (206 / 416) on the bytes.
 * Faults for tests: a required token (401 without, 403 with another), a connection cut after N
 * bytes, a body that stalls after N bytes, 429/5xx answers, an announced size larger than the file, corrupted bytes. Every request is logged.
 * @module
 */
import { createHash } from "node:crypto";

/** Files of one mock repo, by `/`-separated path. */
export type MockFiles = Record<string, Uint8Array>;

/** What the mock hub serves and which faults it injects. */
export interface HubServerOptions {
  /** Model repos by id (`org/name`). */
  models?: Record<string, MockFiles>;
  /** Dataset repos by id. */
  datasets?: Record<string, MockFiles>;
  /** When set, every hub request needs `Authorization: Bearer <token>` (401 without, 403 with another). */
  token?: string;
  /** Close the connection after `after` bytes of the body of `file`, for the first `times` GETs. */
  cut?: { file: string; after: number; times: number };
  /** Send `after` bytes of the body of `file`, then nothing (the connection stays open), for the first `times` GETs. */
  stall?: { file: string; after: number; times: number };
  /**
   * Answer `status` (with `Retry-After: retry_after` when given) to the first `times` hub requests
   * (those of `on`: the API or the resolve URLs; default both), like a hub under load or down.
   */
  fail?: { status: number; times: number; retry_after?: string; on?: "api" | "resolve" };
  /** Announce these sizes (bytes) for these files instead of the real ones (a truncated server). */
  announce?: Record<string, number>;
  /** Serve these files with one byte flipped (the ETag stays the one of the true bytes). */
  corrupt?: string[];
}

/** One logged request. */
export interface LoggedRequest {
  server: "hub" | "cdn";
  method: string;
  path: string;
  range: string | null;
  authorization: boolean;
}

/** A running mock hub. */
export interface HubServer {
  /** Base URL, to pass as `endpoint`. */
  url: string;
  /** Every request received so far, in order. */
  requests: LoggedRequest[];
  /** The commit hash `main` of `id` resolves to. */
  commitOf(id: string): string;
  /**
   * Push a new commit with these files to `main` of repo `id` (a dataset when `repo_type` says
   * so); the old commit stays reachable by its hash. Returns the new commit.
   */
  update(id: string, files: MockFiles, repo_type?: "model" | "dataset"): string;
  /** Stop both servers. */
  close(): Promise<void>;
}

const hex = (algo: string, data: Uint8Array | string, prefix = "") =>
  createHash(algo).update(prefix).update(data).digest("hex");

/** True for the files the mock serves like LFS files (CDN redirect, sha256 ETag). */
export function isLfs(path: string): boolean {
  return /\.(safetensors|parquet|bin)$/.test(path);
}

/** Read every file under `dir` into a {@linkcode MockFiles} map. */
export async function readFolder(dir: string): Promise<MockFiles> {
  const out: MockFiles = {};
  const walk = async (sub: string) => {
    for await (const e of Deno.readDir(sub ? `${dir}/${sub}` : dir)) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory) await walk(rel);
      else out[rel] = await Deno.readFile(`${dir}/${rel}`);
    }
  };
  await walk("");
  return out;
}

/** Start the mock hub (and its CDN). Close it with `close()` at the end of the test. */
export function startHubServer(opts: HubServerOptions): HubServer {
  const requests: LoggedRequest[] = [];
  // Every repo's main starts at sha1(id); update() moves it. Old commits stay reachable.
  const heads = new Map<string, string>();
  const commits = new Map<string, MockFiles>(); // `${kind}/${id}@${commit}` -> files
  const commitOf = (id: string) => heads.get(id) ?? hex("sha1", id);
  for (const [kind, repos] of [["models", opts.models ?? {}], ["datasets", opts.datasets ?? {}]] as const) {
    for (const [id, files] of Object.entries(repos)) commits.set(`${kind}/${id}@${commitOf(id)}`, files);
  }
  const cuts = { ...(opts.cut ?? { file: "", after: 0, times: 0 }) };
  const stalls = { ...(opts.stall ?? { file: "", after: 0, times: 0 }) };
  const fails = { ...(opts.fail ?? { status: 500, times: 0 }) };
  const blobs = new Map<string, { file: string; data: Uint8Array }>();
  for (const repos of [opts.models ?? {}, opts.datasets ?? {}]) {
    for (const files of Object.values(repos)) {
      for (const [file, data] of Object.entries(files)) blobs.set(hex("sha256", data), { file, data });
    }
  }

  const bytes = (req: Request, file: string, data: Uint8Array, extra: Record<string, string>) => {
    let body = data;
    if (opts.corrupt?.includes(file)) {
      body = data.slice();
      body[body.length >> 1] ^= 0xff;
    }
    const total = body.length;
    const range = req.headers.get("range")?.match(/^bytes=(\d+)-$/);
    const start = range ? Number(range[1]) : 0;
    if (range && start >= total) {
      return new Response(null, { status: 416, headers: { "content-range": `bytes */${total}` } });
    }
    const headers: Record<string, string> = {
      ...extra,
      "content-length": String(total - start),
      "accept-ranges": "bytes",
    };
    if (range) headers["content-range"] = `bytes ${start}-${total - 1}/${total}`;
    const status = range ? 206 : 200;
    if (req.method === "HEAD") {
      if (opts.announce?.[file] !== undefined) headers["content-length"] = String(opts.announce[file]);
      return new Response(null, { status, headers });
    }
    const slice = body.subarray(start);
    if (cuts.file === file && cuts.times > 0) {
      cuts.times--;
      const part = slice.subarray(0, cuts.after);
      let sent = false;
      // Enqueue a prefix, then close the stream early: with the full content-length announced,
      // the client sees the connection drop mid-body.
      const stream = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (!sent) {
            sent = true;
            c.enqueue(part);
            return;
          }
          await new Promise((r) => setTimeout(r, 10));
          c.close();
        },
      });
      return new Response(stream, { status, headers });
    }
    if (stalls.file === file && stalls.times > 0) {
      stalls.times--;
      const part = slice.subarray(0, stalls.after);
      let sent = false;
      let wake = () => {};
      // Enqueue a prefix, then hang until the client gives up (cancel) or 30 s pass.
      const stream = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (!sent) {
            sent = true;
            c.enqueue(part);
            return;
          }
          await new Promise<void>((r) => {
            const timer = setTimeout(r, 30_000);
            wake = () => (clearTimeout(timer), r());
          });
          c.close();
        },
        cancel() {
          wake();
        },
      });
      return new Response(stream, { status, headers });
    }
    return new Response(slice as Uint8Array<ArrayBuffer>, { status, headers });
  };

  const cdn = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    requests.push({
      server: "cdn",
      method: req.method,
      path,
      range: req.headers.get("range"),
      authorization: req.headers.has("authorization"),
    });
    const blob = blobs.get(path.slice(1));
    if (!blob) return new Response("no such blob", { status: 404 });
    return bytes(req, blob.file, blob.data, { etag: `"${path.slice(1)}"` });
  });
  const cdnUrl = `http://127.0.0.1:${cdn.addr.port}`;

  const hub = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    const auth = req.headers.get("authorization");
    requests.push({
      server: "hub",
      method: req.method,
      path,
      range: req.headers.get("range"),
      authorization: !!auth,
    });
    const err = (status: number, code: string) =>
      new Response(JSON.stringify({ error: code }), { status, headers: { "x-error-code": code } });
    if (opts.token !== undefined) {
      if (!auth) return err(401, "RepoNotFound");
      if (auth !== `Bearer ${opts.token}`) return err(403, "GatedRepo");
    }
    if (fails.times > 0 && (fails.on === undefined || (fails.on === "api") === path.startsWith("/api/"))) {
      fails.times--;
      const headers: Record<string, string> = fails.retry_after === undefined
        ? {}
        : { "retry-after": fails.retry_after };
      return new Response("busy", { status: fails.status, headers });
    }
    const api = path.match(/^\/api\/(models|datasets)\/(.+)\/revision\/([^/]+)$/);
    const res = path.match(/^\/(datasets\/)?(.+?)\/resolve\/([^/]+)\/(.+)$/);
    const m: string[] | undefined = api
      ? [api[1], api[2], api[3], ""]
      : res
      ? [res[1] ? "datasets" : "models", res[2], res[3], res[4]]
      : undefined;
    if (!m) return err(404, "NotFound");
    const [kind, id, rev, file] = m.map(decodeURIComponent);
    if (!(kind === "datasets" ? opts.datasets : opts.models)?.[id]) return err(404, "RepoNotFound");
    const commit = rev === "main" ? commitOf(id) : rev;
    const repo = commits.get(`${kind}/${id}@${commit}`);
    if (!repo) return err(404, "RevisionNotFound");
    if (api) {
      const siblings = Object.keys(repo).sort().map((rfilename) => ({ rfilename }));
      return Response.json({ id, sha: commit, siblings });
    }
    const data = repo[file];
    if (!data) return err(404, "EntryNotFound");
    if (isLfs(file)) {
      const sha = hex("sha256", data);
      const size = String(opts.announce?.[file] ?? data.length);
      return new Response(null, {
        status: 302,
        headers: {
          location: `${cdnUrl}/${sha}`,
          "x-repo-commit": commit,
          "x-linked-etag": `"${sha}"`,
          "x-linked-size": size,
          etag: `W/"${hex("sha1", data)}"`,
        },
      });
    }
    return bytes(req, file, data, {
      etag: `"${hex("sha1", data, `blob ${data.length}\0`)}"`,
      "x-repo-commit": commit,
    });
  });

  return {
    url: `http://127.0.0.1:${hub.addr.port}`,
    requests,
    commitOf,
    update(id, files, repo_type = "model") {
      const commit = hex("sha1", `${commitOf(id)}+`);
      heads.set(id, commit);
      commits.set(`${repo_type}s/${id}@${commit}`, files);
      for (const [file, data] of Object.entries(files)) blobs.set(hex("sha256", data), { file, data });
      return commit;
    },
    async close() {
      await Promise.all([hub.shutdown(), cdn.shutdown()]);
    },
  };
}
