/**
 * Typed errors: every failure of the SDK is a {@link CascadeError} with the HTTP
 * status and the server's JSON `code`, or a client code for failures that never
 * reached a server.
 * @module
 */

/** Codes the client gives failures that have no server answer. */
export type ClientErrorCode = "network" | "timeout" | "ice_failed" | "aborted";

/** A failure of a request to a media server, or of the client itself. */
export class CascadeError extends Error {
  /** HTTP status, 0 for network/browser failures. */
  readonly status: number;
  /** The server's JSON `code` (`token_expired`, `server_full`, ...), or a {@link ClientErrorCode}. */
  readonly code: string;
  /** Seconds to wait before retrying, from `Retry-After`. */
  readonly retryAfter?: number;

  constructor(code: string, message: string, opts: { status?: number; retryAfter?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "CascadeError";
    this.code = code;
    this.status = opts.status ?? 0;
    if (opts.retryAfter !== undefined) this.retryAfter = opts.retryAfter;
  }
}

/**
 * Seconds from a `Retry-After` value: delta-seconds or an HTTP date (RFC 9110
 * §10.2.3); `undefined` when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  const when = Date.parse(v);
  if (Number.isNaN(when)) return undefined;
  return Math.max(0, Math.ceil((when - now) / 1000));
}

/** The error a non-2xx answer stands for: its JSON `{code, message}`, or `http_STATUS`. */
export async function errorFromResponse(resp: Response, what: string): Promise<CascadeError> {
  let code = `http_${resp.status}`;
  let message = `${what}: ${resp.status} ${resp.statusText}`.trim();
  try {
    const text = await resp.text();
    if (text) {
      try {
        const body: unknown = JSON.parse(text);
        if (body && typeof body === "object") {
          const b = body as { code?: unknown; message?: unknown };
          if (typeof b.code === "string" && b.code) code = b.code;
          if (typeof b.message === "string" && b.message) message = `${what}: ${b.message}`;
        }
      } catch {
        message = `${what}: ${resp.status} ${text.slice(0, 200)}`;
      }
    }
  } catch {
    // The body could not be read: the status says enough.
  }
  const retryAfter = parseRetryAfter(resp.headers.get("Retry-After"));
  return new CascadeError(code, message, retryAfter === undefined ? { status: resp.status } : { status: resp.status, retryAfter });
}

/** The error for a `fetch` that threw (no answer): `aborted`, `timeout` or `network`. */
export function networkError(e: unknown, what: string): CascadeError {
  if (e instanceof CascadeError) return e;
  const name = e && typeof e === "object" && "name" in e ? String((e as { name: unknown }).name) : "";
  const detail = e instanceof Error ? e.message : String(e);
  const code = name === "TimeoutError" ? "timeout" : name === "AbortError" ? "aborted" : "network";
  return new CascadeError(code, `${what}: ${detail}`, { cause: e });
}
