/**
 * What publications and subscriptions share: the WHIP/WHEP exchange (offer, answer,
 * resource URL, ETag), the resource's state (its server-sent events plus the peer
 * connection's ICE state), ICE restart (RFC 9725 §4.4.2), late candidates as trickle
 * PATCHes with `If-Match`, stats and the final DELETE.
 * @module
 */
import { CascadeError } from "./errors.js";
import { absoluteLocation, type Http } from "./http.js";
import { iceServersFromLink } from "./link.js";
import { applyRestartFragment, offerFragment } from "./sdp.js";
import { summarizeStats, type StatsSummary } from "./stats.js";

/** A publication's or subscription's state. */
export type ResourceState = "connecting" | "live" | "reconnecting" | "ended";

/** Detail of a `state` event. */
export interface StateDetail {
  state: ResourceState;
  reason?: string;
}

/** Longest wait for ICE gathering before the offer goes as it is: the server is
 *  ICE-lite and learns the client's address from its connectivity checks. */
export const GATHER_TIMEOUT_MS = 1000;
/** How long ICE may stay `disconnected` before the resource is restarted. */
export const DISCONNECTED_RESTART_MS = 2000;

/** What a resource needs from the client that made it. */
export interface ResourceContext {
  http: Http;
  makePeerConnection(): RTCPeerConnection;
  EventSource: typeof EventSource | undefined;
  /** Called when the connection is in trouble (ICE failed, or disconnected for long). */
  onTrouble(r: Resource): void;
  /** Called once when the resource ends. */
  onEnded(r: Resource): void;
}

/** The answer of a WHIP/WHEP POST. */
export interface Negotiated {
  resource: string;
  etag: string | undefined;
  answer: string;
}

function waitForGathering(pc: RTCPeerConnection, ms: number): Promise<void> {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener("icegatheringstatechange", check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, ms);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/** WHIP/WHEP: POSTs `pc`'s offer to `url`, applies the answer. Deletes the resource
 *  again when the answer cannot be applied. */
export async function negotiate(http: Http, pc: RTCPeerConnection, url: string): Promise<Negotiated> {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await waitForGathering(pc, GATHER_TIMEOUT_MS);
  const sdp = pc.localDescription?.sdp ?? offer.sdp ?? "";
  const resp = await http.request(url, { method: "POST", headers: { "Content-Type": "application/sdp" }, body: sdp });
  const resource = absoluteLocation(resp, url);
  const etag = resp.headers.get("ETag") ?? undefined;
  const answer = await resp.text();
  const announced = iceServersFromLink(resp.headers.get("Link"));
  try {
    // The server's STUN/TURN servers, unless the application configured its own.
    if (announced.length > 0 && !(pc.getConfiguration().iceServers ?? []).length) {
      pc.setConfiguration({ ...pc.getConfiguration(), iceServers: announced });
    }
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
  } catch (e) {
    await http.request(resource, { method: "DELETE" }).catch(() => undefined);
    throw new CascadeError("bad_answer", `${url}: the answer does not apply: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return { resource, etag, answer };
}

/** The part of {@link Publication} and {@link Subscription} that does not depend on the direction. */
export abstract class Resource extends EventTarget {
  #resource = "";
  #pc: RTCPeerConnection | undefined;
  #state: ResourceState = "connecting";
  #serverState: ResourceState | undefined;
  #etag: string | undefined;
  #events: EventSource | undefined;
  #restarting: Promise<void> | undefined;
  #disconnectedTimer: ReturnType<typeof setTimeout> | undefined;
  #stopping: Promise<void> | undefined;
  #ended = false;
  #detach: (() => void) | undefined;
  protected readonly ctx: ResourceContext;

  protected constructor(ctx: ResourceContext) {
    super();
    this.ctx = ctx;
  }

  /** The resource URL (the answer's `Location`, made absolute). A re-publish changes it. */
  get resource(): string {
    return this.#resource;
  }
  /** The peer connection. A re-publish replaces it. */
  get pc(): RTCPeerConnection {
    if (!this.#pc) throw new CascadeError("aborted", "no peer connection yet");
    return this.#pc;
  }
  get state(): ResourceState {
    return this.#state;
  }
  /** The ETag of the current ICE session, sent back in `If-Match`. */
  get etag(): string | undefined {
    return this.#etag;
  }

  /** Takes `pc` and its negotiated resource; follows their states from now on. */
  protected attach(pc: RTCPeerConnection, n: Negotiated): void {
    this.#detach?.();
    this.#events?.close();
    this.#pc = pc;
    this.#resource = n.resource;
    this.#etag = n.etag;
    this.#serverState = undefined;
    const onIce = () => this.#onIceState(pc);
    const onCandidate = (ev: RTCPeerConnectionIceEvent) => void this.#trickle(pc, ev.candidate);
    pc.addEventListener("iceconnectionstatechange", onIce);
    pc.addEventListener("icecandidate", onCandidate);
    this.#detach = () => {
      pc.removeEventListener("iceconnectionstatechange", onIce);
      pc.removeEventListener("icecandidate", onCandidate);
      clearTimeout(this.#disconnectedTimer);
    };
    this.#followEvents(n.resource);
    this.#update();
  }

  #onIceState(pc: RTCPeerConnection): void {
    if (pc !== this.#pc) return;
    const s = pc.iceConnectionState;
    clearTimeout(this.#disconnectedTimer);
    if (s === "failed") this.ctx.onTrouble(this);
    else if (s === "disconnected") {
      this.#disconnectedTimer = setTimeout(() => {
        if (pc === this.#pc && pc.iceConnectionState === "disconnected") this.ctx.onTrouble(this);
      }, DISCONNECTED_RESTART_MS);
    }
    this.#update(s === "failed" ? "ice_failed" : s === "disconnected" ? "ice_disconnected" : undefined);
  }

  /** Candidates found after the offer went: trickled with the ICE session's ETag. */
  async #trickle(pc: RTCPeerConnection, c: RTCIceCandidate | null): Promise<void> {
    if (pc !== this.#pc || !c || !c.candidate || this.#restarting || !this.#resource || this.#state === "ended") return;
    const headers: Record<string, string> = { "Content-Type": "application/trickle-ice-sdpfrag" };
    if (this.#etag) headers["If-Match"] = this.#etag;
    const body = offerFragment(pc.localDescription?.sdp ?? "", [{ mid: c.sdpMid ?? "0", candidate: c.candidate }]);
    // Best effort: the server is ICE-lite and needs no client candidate.
    await this.ctx.http.request(this.#resource, { method: "PATCH", headers, body }).catch(() => undefined);
  }

  #followEvents(resource: string): void {
    const ES = this.ctx.EventSource;
    if (!ES) return;
    const es = new ES(`${resource}/events`);
    this.#events = es;
    es.addEventListener("state", (ev) => {
      if (es !== this.#events) return;
      let d: { state?: unknown; reason?: unknown };
      try {
        d = JSON.parse((ev as MessageEvent<string>).data) as typeof d;
      } catch {
        return;
      }
      if (d.state === "connecting" || d.state === "live" || d.state === "reconnecting" || d.state === "ended") {
        this.#serverState = d.state;
        if (d.state === "ended") es.close();
        this.#update(typeof d.reason === "string" ? d.reason : undefined);
        if (d.state === "ended") void this.#end("server");
      }
    });
    es.addEventListener("error", () => {
      // The resource is gone (404) or the stream ended: no reconnection.
      if (es.readyState === 2) es.close();
    });
  }

  #update(reason?: string): void {
    let next: ResourceState;
    const ice = this.#pc?.iceConnectionState;
    if (this.#ended || this.#serverState === "ended") next = "ended";
    else if (this.#restarting || this.#serverState === "reconnecting" || ice === "disconnected" || ice === "failed") next = "reconnecting";
    else if (ice === "connected" || ice === "completed") next = "live";
    else if (this.#state === "live" || this.#state === "reconnecting") next = "reconnecting";
    else next = "connecting";
    if (next === this.#state) return;
    this.#state = next;
    const detail: StateDetail = reason === undefined ? { state: next } : { state: next, reason };
    this.dispatchEvent(new CustomEvent<StateDetail>("state", { detail }));
  }

  /** ICE restart: a new offer's credentials PATCHed with `If-Match: "*"`; the
   *  answer fragment's credentials applied to the remote description. */
  restartIce(): Promise<void> {
    if (this.#stopping) return Promise.reject(new CascadeError("aborted", "the resource has ended"));
    this.#restarting ??= this.#restart().finally(() => {
      this.#restarting = undefined;
      this.#update();
    });
    return this.#restarting;
  }

  async #restart(): Promise<void> {
    const pc = this.pc;
    this.#update("ice_restart");
    const offer = await pc.createOffer({ iceRestart: true });
    await pc.setLocalDescription(offer);
    const resp = await this.ctx.http.request(this.#resource, {
      method: "PATCH",
      headers: { "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": "*" },
      body: offerFragment(offer.sdp ?? "", []),
    });
    const frag = resp.status === 200 ? await resp.text() : "";
    const remote = pc.remoteDescription?.sdp;
    if (!frag || !remote) {
      await pc.setLocalDescription({ type: "rollback" }).catch(() => undefined);
      throw new CascadeError("restart_refused", `PATCH ${this.#resource}: the server did not restart ICE (${resp.status})`, { status: resp.status });
    }
    this.#etag = resp.headers.get("ETag") ?? this.#etag;
    await pc.setRemoteDescription({ type: "answer", sdp: applyRestartFragment(remote, frag) });
  }

  /** Restarts ICE; when the server no longer knows the resource, makes a new one
   *  ({@link renew}). */
  async recover(): Promise<void> {
    if (this.#stopping) return;
    try {
      await this.restartIce();
    } catch (e) {
      if (e instanceof CascadeError && (e.status === 404 || e.code === "unknown_resource")) {
        await this.renew();
      } else {
        throw e;
      }
    }
  }

  /** Makes the resource again on the server (a new URL), after it was lost. */
  protected abstract renew(): Promise<void>;

  /** Summed statistics of the peer connection. */
  async stats(): Promise<StatsSummary> {
    return summarizeStats(await this.pc.getStats());
  }

  /** DELETEs the resource and closes the connection; idempotent. */
  stop(): Promise<void> {
    return this.#end("local");
  }

  #end(by: "local" | "server"): Promise<void> {
    if (this.#stopping) return this.#stopping;
    this.#ended = true;
    this.#stopping = (async () => {
      this.#detach?.();
      this.#events?.close();
      this.#update(by === "local" ? "stopped" : "server");
      try {
        if (by === "local" && this.#resource) {
          await this.ctx.http.request(this.#resource, { method: "DELETE" }).catch((e: unknown) => {
            // Already gone is what we wanted.
            if (!(e instanceof CascadeError && e.status === 404)) throw e;
          });
        }
      } finally {
        this.#pc?.close();
        this.released();
        this.ctx.onEnded(this);
        this.dispatchEvent(new CustomEvent("ended", { detail: { reason: by === "local" ? "stopped" : "server" } }));
      }
    })();
    return this.#stopping;
  }

  /** Releases what a subclass holds (local tracks), once, at the end. */
  protected released(): void {}
}
