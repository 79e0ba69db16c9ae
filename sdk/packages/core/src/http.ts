/**
 * Requests to a media server: the token as `Authorization: Bearer`, a time limit,
 * and every failure as a {@link CascadeError}.
 * @module
 */
import { CascadeError, errorFromResponse, networkError } from "./errors.js";

/** A token, or a function that gives a fresh one (called for every request). */
export type TokenSource = string | (() => string | Promise<string>);

/** The token of a {@link TokenSource}. */
export async function resolveToken(token: TokenSource): Promise<string> {
  return typeof token === "function" ? await token() : token;
}

/** Default time limit of one request, in milliseconds. */
export const REQUEST_TIMEOUT_MS = 15_000;

/** One media server's requests. */
export class Http {
  constructor(
    readonly fetch: typeof globalThis.fetch,
    readonly token: TokenSource,
    readonly timeoutMs: number = REQUEST_TIMEOUT_MS,
  ) {}

  /** `fetch` with the token; resolves with a 2xx answer, rejects with a {@link CascadeError}. */
  async request(url: string, init: RequestInit & { auth?: boolean } = {}): Promise<Response> {
    const method = init.method ?? "GET";
    const what = `${method} ${url}`;
    const headers = new Headers(init.headers);
    if (init.auth !== false) headers.set("Authorization", `Bearer ${await resolveToken(this.token)}`);
    const { auth: _auth, ...rest } = init;
    let resp: Response;
    try {
      resp = await this.fetch(url, { ...rest, method, headers, signal: init.signal ?? timeoutSignal(this.timeoutMs) });
    } catch (e) {
      throw networkError(e, what);
    }
    if (!resp.ok) throw await errorFromResponse(resp, what);
    return resp;
  }
}

function timeoutSignal(ms: number): AbortSignal | undefined {
  return typeof AbortSignal !== "undefined" && "timeout" in AbortSignal ? AbortSignal.timeout(ms) : undefined;
}

/** `location` resolved against the URL of the answer that carried it (RFC 9110 §10.2.2). */
export function absoluteLocation(resp: Response, requestUrl: string): string {
  const location = resp.headers.get("Location");
  if (!location) throw new CascadeError("bad_response", `${requestUrl}: the answer has no Location header`, { status: resp.status });
  return new URL(location, resp.url || requestUrl).href;
}

/** `https://m1/` → `https://m1`: a base URL without trailing slashes. */
export function trimBase(url: string): string {
  return url.replace(/\/+$/, "");
}
