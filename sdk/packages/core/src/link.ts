/**
 * ICE servers a WHIP/WHEP answer announces in `Link` headers (RFC 9725 §4.6,
 * RFC 8288 syntax): `<turn:t.example:3478>; rel="ice-server"; username="u";
 * credential="c"; credential-type="password"`.
 * @module
 */

/** Splits a header value at top-level commas (not inside `<...>` or quotes). */
function splitTop(value: string, sep: string): string[] {
  const out: string[] = [];
  let cur = "";
  let angle = false;
  let quote = false;
  for (const ch of value) {
    if (ch === '"' && !angle) quote = !quote;
    else if (ch === "<" && !quote) angle = true;
    else if (ch === ">" && !quote) angle = false;
    if (ch === sep && !angle && !quote) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out.map((s) => s.trim()).filter((s) => s.length > 0);
}

/** The `rel="ice-server"` links of a `Link` header value as `RTCIceServer`s; anything else is skipped. */
export function iceServersFromLink(value: string | null): RTCIceServer[] {
  if (!value) return [];
  const servers: RTCIceServer[] = [];
  for (const link of splitTop(value, ",")) {
    const m = /^<([^>]*)>(.*)$/.exec(link);
    if (!m) continue;
    const params = new Map<string, string>();
    for (const p of splitTop(m[2] ?? "", ";")) {
      const eq = p.indexOf("=");
      if (eq < 0) continue;
      const k = p.slice(0, eq).trim().toLowerCase();
      const v = p.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
      params.set(k, v);
    }
    const rels = (params.get("rel") ?? "").split(/\s+/);
    const url = m[1] ?? "";
    if (!rels.includes("ice-server") || !/^(stuns?|turns?):/.test(url)) continue;
    const server: RTCIceServer = { urls: url };
    const username = params.get("username");
    const credential = params.get("credential");
    if (username !== undefined) server.username = username;
    if (credential !== undefined) server.credential = credential;
    servers.push(server);
  }
  return servers;
}
