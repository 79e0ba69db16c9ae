/**
 * The few SDP manipulations WHIP/WHEP needs: the trickle-ice-sdpfrag of an offer
 * (RFC 8840) and the answer with the credentials of an ICE restart's answer.
 * @module
 */

function lines(sdp: string): string[] {
  return sdp.split(/\r?\n/).filter((l) => l.length > 0);
}

/**
 * The `application/trickle-ice-sdpfrag` body of `offer` (RFC 8840 §5.2.1): its ICE
 * credentials, then for each m-line its `a=mid` and `candidates` (default: the
 * offer's own `a=candidate` lines).
 */
export function offerFragment(offer: string, candidates?: { mid: string; candidate: string }[]): string {
  const out: string[] = [];
  let ufrag: string | undefined;
  let pwd: string | undefined;
  const mids: { mline: string; mid: string; cands: string[] }[] = [];
  let current: { mline: string; mid: string; cands: string[] } | undefined;
  for (const l of lines(offer)) {
    if (l.startsWith("m=")) {
      current = { mline: l, mid: "", cands: [] };
      mids.push(current);
    } else if (l.startsWith("a=mid:") && current) current.mid = l.slice(6);
    else if (l.startsWith("a=ice-ufrag:")) ufrag ??= l.slice(12);
    else if (l.startsWith("a=ice-pwd:")) pwd ??= l.slice(10);
    else if (l.startsWith("a=candidate:") && current) current.cands.push(l);
  }
  if (ufrag !== undefined) out.push(`a=ice-ufrag:${ufrag}`);
  if (pwd !== undefined) out.push(`a=ice-pwd:${pwd}`);
  for (const m of mids) {
    out.push(m.mline, `a=mid:${m.mid}`);
    const cands = candidates ? candidates.filter((c) => c.mid === m.mid).map((c) => `a=${c.candidate.replace(/^a=/, "")}`) : m.cands;
    out.push(...cands);
  }
  return out.join("\r\n") + "\r\n";
}

/** The ICE credentials of an SDP or fragment (the first `a=ice-ufrag`/`a=ice-pwd`). */
export function iceCredentials(sdp: string): { ufrag?: string; pwd?: string } {
  const out: { ufrag?: string; pwd?: string } = {};
  for (const l of lines(sdp)) {
    if (l.startsWith("a=ice-ufrag:") && out.ufrag === undefined) out.ufrag = l.slice(12);
    if (l.startsWith("a=ice-pwd:") && out.pwd === undefined) out.pwd = l.slice(10);
  }
  return out;
}

/**
 * `answer` with the ICE credentials (and candidates, when it has some) of an ICE
 * restart's answer fragment `frag` (RFC 9725 §4.4.2): what `setRemoteDescription`
 * takes after the restart's PATCH.
 */
export function applyRestartFragment(answer: string, frag: string): string {
  const { ufrag, pwd } = iceCredentials(frag);
  const fragLines = lines(frag);
  const candidates = fragLines.filter((l) => l.startsWith("a=candidate:"));
  const end = fragLines.includes("a=end-of-candidates");
  const out: string[] = [];
  let inMedia = false;
  const flushMedia = () => {
    if (inMedia && candidates.length > 0) {
      out.push(...candidates);
      if (end) out.push("a=end-of-candidates");
    }
  };
  for (const l of lines(answer)) {
    if (l.startsWith("m=")) {
      flushMedia();
      inMedia = true;
      out.push(l);
      continue;
    }
    if (l.startsWith("a=ice-ufrag:") && ufrag !== undefined) out.push(`a=ice-ufrag:${ufrag}`);
    else if (l.startsWith("a=ice-pwd:") && pwd !== undefined) out.push(`a=ice-pwd:${pwd}`);
    else if (candidates.length > 0 && (l.startsWith("a=candidate:") || l === "a=end-of-candidates")) continue;
    else out.push(l);
  }
  flushMedia();
  return out.join("\r\n") + "\r\n";
}
