/**
 * HTTPDNS: the nearest media server of a zone, from `cascade dns`'s `/resolve`.
 * @module
 */
import { CascadeError, errorFromResponse, networkError } from "./errors.js";
import { trimBase } from "./http.js";

/** Options of {@link findServer}. */
export interface FindServerOptions {
  /** Base URL of the HTTPDNS service, e.g. `https://dns.example.test:8053`. */
  httpdns: string;
  /** The zone name to resolve, e.g. `media.example.test`. */
  name: string;
  /** Scheme of the server's URL (default `https`). */
  scheme?: "http" | "https";
  /** Port of the server's URL (default: the scheme's). */
  port?: number;
  fetch?: typeof fetch;
}

interface ResolveAnswer {
  answers?: { address?: string; name?: string }[];
}

/** HTTPDNS: `GET {httpdns}/resolve?name=NAME` → the first answer's server base URL. */
export async function findServer(opts: FindServerOptions): Promise<string> {
  const f = opts.fetch ?? globalThis.fetch.bind(globalThis);
  const url = `${trimBase(opts.httpdns)}/resolve?name=${encodeURIComponent(opts.name)}`;
  const what = `GET ${url}`;
  let resp: Response;
  try {
    resp = await f(url);
  } catch (e) {
    throw networkError(e, what);
  }
  if (!resp.ok) throw await errorFromResponse(resp, what);
  const body = (await resp.json()) as ResolveAnswer;
  const first = body.answers?.[0];
  const host = first?.name || first?.address;
  if (!host) throw new CascadeError("no_server", `${what}: no server answered for ${opts.name}`, { status: resp.status });
  const scheme = opts.scheme ?? "https";
  const h = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `${scheme}://${h}${opts.port !== undefined ? `:${opts.port}` : ""}`;
}
