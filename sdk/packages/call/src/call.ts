/**
 * One 1:1 call, either direction: its media (a publication on this side's server,
 * a subscription to the other side's publication, wherever it is), its state
 * machine, and the messages it sends. Created by {@link CallAgent}.
 * @module
 */
import { CascadeError, type Client, type Publication, type Subscription } from "@cascade/core";
import type { SignalChannel } from "@cascade/signal";
import { callMessage, type CallMedia, type CallMessage, type CallMessageFields, type CallMessageType } from "./protocol.js";

/** A call's state. */
export type CallState = "ringing" | "connecting" | "active" | "reconnecting" | "ended";

/** Why a call ended. */
export type EndReason =
  | "hangup"
  | "remote_hangup"
  | "declined"
  | "cancelled"
  | "busy"
  | "timeout"
  | "answered_elsewhere"
  | "failed";

/** Detail of a call's `state` event. */
export interface CallStateDetail {
  state: CallState;
  reason?: EndReason | string;
}

/** What a call needs from its agent. @internal */
export interface CallContext {
  signal: SignalChannel;
  device: string;
  ringTimeoutMs: number;
  connectTimeoutMs: number;
  client(room: string): Client;
  getMedia(c: CallMedia): Promise<MediaStream>;
  getDisplayMedia(): Promise<MediaStream>;
  ended(call: Call): void;
}

/** How a call starts. @internal */
export interface CallInit {
  id: string;
  peer: string;
  direction: "outgoing" | "incoming";
  room: string;
  media: CallMedia;
  /** Incoming: the invite. */
  invite?: CallMessage;
}

/**
 * A 1:1 call. Events: `state` (`CustomEvent<{state, reason?}>`), `remotestream`
 * (`CustomEvent<{stream}>`), `localstream` (`CustomEvent<{stream}>`), `ended`
 * (`CustomEvent<{reason}>`), and for outgoing calls `ringing`
 * (`CustomEvent<{device}>`) when a device of the callee rings.
 */
export class Call extends EventTarget {
  readonly id: string;
  /** The other user. */
  readonly peer: string;
  readonly direction: "outgoing" | "incoming";
  /** The media room both sides publish in. */
  readonly room: string;
  readonly media: CallMedia;
  readonly #ctx: CallContext;
  readonly #invite: CallMessage | undefined;
  #state: CallState = "ringing";
  #endReason: EndReason | undefined;
  #startedAt: number | undefined;
  #localStream: MediaStream | undefined;
  #remoteStream: MediaStream | undefined;
  #client: Client | undefined;
  #publication: Publication | undefined;
  #subscription: Subscription | undefined;
  /** Outgoing: the callee's device whose accept won; incoming: ours once accepted. */
  #acceptedDevice: string | undefined;
  #ringTimer: ReturnType<typeof setTimeout> | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #ending: Promise<void> | undefined;
  #camera: MediaStreamTrack | null = null;
  #screen: MediaStream | undefined;

  /** @internal */
  constructor(ctx: CallContext, init: CallInit) {
    super();
    this.#ctx = ctx;
    this.id = init.id;
    this.peer = init.peer;
    this.direction = init.direction;
    this.room = init.room;
    this.media = init.media;
    this.#invite = init.invite;
  }

  get state(): CallState {
    return this.#state;
  }
  get endReason(): EndReason | undefined {
    return this.#endReason;
  }
  /** When it became active (ms since the epoch). */
  get startedAt(): number | undefined {
    return this.#startedAt;
  }
  get localStream(): MediaStream | undefined {
    return this.#localStream;
  }
  get remoteStream(): MediaStream | undefined {
    return this.#remoteStream;
  }
  get publication(): Publication | undefined {
    return this.#publication;
  }
  get subscription(): Subscription | undefined {
    return this.#subscription;
  }
  /** Whether the screen is sent instead of the camera. */
  get screenSharing(): boolean {
    return this.#screen !== undefined;
  }

  #setState(state: CallState, reason?: EndReason | string): void {
    if (this.#state === state || this.#state === "ended") return;
    this.#state = state;
    // Accepted but never connected (media blocked, a server gone): give up.
    if (state === "connecting") {
      this.#connectTimer = setTimeout(() => {
        if (this.#state === "connecting") void this.#hangup("failed");
      }, this.#ctx.connectTimeoutMs);
    } else {
      clearTimeout(this.#connectTimer);
    }
    if (state === "active" && this.#startedAt === undefined) this.#startedAt = Date.now();
    const detail: CallStateDetail = reason === undefined ? { state } : { state, reason };
    this.dispatchEvent(new CustomEvent<CallStateDetail>("state", { detail }));
  }

  #send(to: { user: string }, type: CallMessageType, fields: CallMessageFields = {}): Promise<void> {
    return this.#ctx.signal.send(to, callMessage(type, this.id, this.#ctx.device, fields));
  }

  /** Fails when the call ended while an await was pending. */
  #alive(): void {
    if (this.#state === "ended") throw new CascadeError("aborted", `call ${this.id} has ended`);
  }

  #startRingTimer(ms: number, onTimeout: () => void): void {
    clearTimeout(this.#ringTimer);
    this.#ringTimer = setTimeout(onTimeout, Math.max(0, ms));
  }

  async #getLocalMedia(): Promise<MediaStream> {
    const stream = await this.#ctx.getMedia(this.media);
    this.#localStream = stream;
    if (this.#state === "ended") {
      for (const t of stream.getTracks()) t.stop();
      this.#alive();
    }
    this.dispatchEvent(new CustomEvent("localstream", { detail: { stream } }));
    return stream;
  }

  #watch(r: Publication | Subscription): void {
    r.addEventListener("state", () => this.#mediaState());
    if (r === this.#publication) {
      r.addEventListener("republished", () => {
        // Our server lost the publication and it was made again: the other side follows.
        if (this.#state !== "ended" && this.#acceptedDevice !== undefined) {
          void this.#send({ user: this.peer }, "moved", { resource: r.resource }).catch(() => undefined);
        }
      });
    }
    if (r === this.#subscription) {
      r.addEventListener("ended", () => {
        // Every source of the subscription is gone: the other side left (unless it moved).
        if (this.#state !== "ended" && this.#acceptedDevice !== undefined && r === this.#subscription) void this.#end("remote_hangup");
      });
    }
  }

  #mediaState(): void {
    if (this.#state === "ringing" || this.#state === "ended") return;
    const sub = this.#subscription?.state;
    const pub = this.#publication?.state;
    if (sub === "reconnecting" || pub === "reconnecting") {
      if (this.#state === "active" || this.#state === "reconnecting") this.#setState("reconnecting");
    } else if (sub === "live") this.#setState("active");
  }

  async #subscribe(resource: string): Promise<void> {
    const client = this.#client;
    if (!client) return;
    const sub = await client.subscribe({ resources: [resource], audio: this.media.audio, video: this.media.video });
    this.#subscription = sub;
    this.#alive();
    const onTrack = (ev: Event) => {
      const { stream } = (ev as CustomEvent<{ stream: MediaStream }>).detail;
      if (this.#remoteStream === stream) return;
      this.#remoteStream = stream;
      this.dispatchEvent(new CustomEvent("remotestream", { detail: { stream } }));
    };
    sub.addEventListener("track", onTrack);
    const first = sub.streams[0];
    if (first) onTrack(new CustomEvent("track", { detail: { stream: first } }));
    this.#watch(sub);
    this.#mediaState();
  }

  /** The other side re-published under `resource`: subscribe to it instead. */
  async #follow(resource: string): Promise<void> {
    const old = this.#subscription;
    if (old?.resource === resource) return;
    this.#subscription = undefined;
    if (this.#state === "active") this.#setState("reconnecting");
    await old?.stop().catch(() => undefined);
    try {
      await this.#subscribe(resource);
    } catch {
      if (!this.#isEnded()) await this.#hangup("failed");
    }
  }

  /** Outgoing: publishes, sends the invite, rings until answered or timed out. @internal */
  async start(): Promise<void> {
    try {
      const stream = await this.#getLocalMedia();
      this.#client = this.#ctx.client(this.room);
      this.#publication = await this.#client.publish(stream);
      this.#alive();
      this.#watch(this.#publication);
      await this.#send({ user: this.peer }, "invite", {
        resource: this.#publication.resource,
        server: this.#client.server,
        room: this.room,
        media: this.media,
      });
      this.#alive();
      this.#startRingTimer(this.#ctx.ringTimeoutMs, () => {
        void this.#send({ user: this.peer }, "cancel", { reason: "timeout" }).catch(() => undefined);
        void this.#end("timeout");
      });
    } catch (e) {
      if (this.#state !== "ended") await this.#end("failed");
      throw e;
    }
  }

  /** Incoming: tells the caller it rings, times out with the invite's remaining ring time. @internal */
  ring(remainingMs: number): void {
    void this.#send({ user: this.peer }, "ringing").catch(() => undefined);
    this.#startRingTimer(remainingMs, () => void this.#end("timeout"));
  }

  /** A message of this call from `from` (the peer, or our own user's other device). @internal */
  handle(m: CallMessage, from: string, self: string): void {
    if (this.#state === "ended") return;
    if (this.direction === "outgoing") this.#handleOutgoing(m, from);
    else this.#handleIncoming(m, from, self);
  }

  #handleOutgoing(m: CallMessage, from: string): void {
    if (from !== this.peer) return;
    const answered = this.#acceptedDevice !== undefined;
    switch (m.type) {
      case "ringing":
        if (!answered) this.dispatchEvent(new CustomEvent("ringing", { detail: { device: m.device } }));
        break;
      case "accept":
        if (answered || !m.resource) return; // another device was first; our cancel stops it
        this.#acceptedDevice = m.device;
        clearTimeout(this.#ringTimer);
        this.#setState("connecting");
        // The callee's other devices stop ringing (or drop their late accept).
        void this.#send({ user: this.peer }, "cancel", { accepted_device: m.device }).catch(() => undefined);
        this.#subscribe(m.resource).catch(() => {
          if (this.#state !== "ended") void this.#hangup("failed");
        });
        break;
      case "decline":
      case "busy":
        if (answered) return;
        void this.#send({ user: this.peer }, "cancel", { reason: m.type === "busy" ? "busy" : "declined" }).catch(() => undefined);
        void this.#end(m.type === "busy" ? "busy" : "declined");
        break;
      case "hangup":
        if (m.device === this.#acceptedDevice) void this.#end("remote_hangup");
        break;
      case "moved":
        if (m.device === this.#acceptedDevice && m.resource) void this.#follow(m.resource);
        break;
      default:
        break;
    }
  }

  #handleIncoming(m: CallMessage, from: string, self: string): void {
    if (from === self) {
      // Our user's other device took the call.
      if (m.type === "answered" && m.device !== this.#ctx.device && this.#acceptedDevice === undefined) {
        void this.#end("answered_elsewhere");
      }
      return;
    }
    if (from !== this.peer || m.device !== this.#invite?.device) return;
    switch (m.type) {
      case "cancel":
        if (m.accepted_device === this.#ctx.device) return; // confirms our accept
        if (m.accepted_device !== undefined) void this.#end("answered_elsewhere");
        else if (this.#acceptedDevice === undefined) void this.#end(m.reason === "timeout" ? "timeout" : "cancelled");
        break;
      case "hangup":
        void this.#end(this.#acceptedDevice === undefined ? "cancelled" : "remote_hangup");
        break;
      case "moved":
        if (this.#acceptedDevice !== undefined && m.resource) void this.#follow(m.resource);
        break;
      default:
        break;
    }
  }

  /** Incoming: answers. Publishes, subscribes to the caller's publication (on
   *  whatever server), sends `accept` to the caller and `answered` to our other devices. */
  async accept(): Promise<void> {
    if (this.direction !== "incoming") throw new CascadeError("bad_state", "only an incoming call is accepted");
    if (this.#state !== "ringing") throw new CascadeError("bad_state", `the call is ${this.#state}`);
    const invite = this.#invite;
    if (!invite?.resource) throw new CascadeError("bad_state", "the invite has no resource");
    clearTimeout(this.#ringTimer);
    this.#acceptedDevice = this.#ctx.device;
    this.#setState("connecting");
    try {
      const stream = await this.#getLocalMedia();
      this.#client = this.#ctx.client(this.room);
      const [publication] = await Promise.all([this.#client.publish(stream), this.#subscribe(invite.resource)]);
      this.#publication = publication;
      this.#alive();
      this.#watch(publication);
      await this.#send({ user: this.peer }, "accept", { resource: publication.resource });
      this.#alive();
      void this.#send({ user: this.#ctx.signal.user }, "answered").catch(() => undefined);
      this.#mediaState();
    } catch (e) {
      if (!this.#isEnded()) await this.#hangup("failed");
      throw e;
    }
  }

  #isEnded(): boolean {
    return this.#state === "ended";
  }

  /** Incoming: refuses the call. */
  async decline(): Promise<void> {
    if (this.direction !== "incoming") throw new CascadeError("bad_state", "only an incoming call is declined");
    if (this.#state !== "ringing") return;
    clearTimeout(this.#ringTimer);
    await this.#end("declined", this.#send({ user: this.peer }, "decline"));
  }

  /** Cancels an outgoing call while it rings, else hangs up; deletes every resource of the call. */
  hangup(): Promise<void> {
    return this.#hangup("hangup");
  }

  async #hangup(reason: "hangup" | "failed"): Promise<void> {
    if (this.#state === "ended") return this.#ending;
    if (this.direction === "outgoing" && this.#acceptedDevice === undefined) {
      return this.#end(reason === "failed" ? "failed" : "cancelled", this.#send({ user: this.peer }, "cancel", { reason: "cancelled" }));
    }
    if (this.direction === "incoming" && this.#acceptedDevice === undefined) return this.decline();
    return this.#end(reason, this.#send({ user: this.peer }, "hangup"));
  }

  /** Ends the call once: stops ringing, deletes the publication and subscription,
   *  stops the local tracks. `message` is a send to wait for (best effort). */
  #end(reason: EndReason, message?: Promise<void>): Promise<void> {
    if (this.#ending) return this.#ending;
    clearTimeout(this.#ringTimer);
    this.#endReason = reason;
    this.#setState("ended", reason);
    this.#ending = (async () => {
      await Promise.allSettled([message ?? Promise.resolve(), this.#client?.close() ?? Promise.resolve()]);
      for (const t of this.#localStream?.getTracks() ?? []) t.stop();
      if (this.#camera) this.#camera.stop();
      for (const t of this.#screen?.getTracks() ?? []) t.stop();
      this.#ctx.ended(this);
      this.dispatchEvent(new CustomEvent("ended", { detail: { reason } }));
    })();
    return this.#ending;
  }

  /** Mutes or unmutes the local tracks of `kind`. */
  setMuted(kind: "audio" | "video", muted: boolean): void {
    for (const t of this.#localStream?.getTracks() ?? []) if (t.kind === kind) t.enabled = !muted;
  }

  /** Sends the screen instead of the camera (or back). */
  async shareScreen(on: boolean): Promise<void> {
    const pub = this.#publication;
    if (!pub) throw new CascadeError("bad_state", "the call has no publication yet");
    if (on === this.screenSharing) return;
    if (on) {
      const screen = await this.#ctx.getDisplayMedia();
      const track = screen.getVideoTracks()[0];
      if (!track) throw new CascadeError("bad_state", "the screen capture has no video");
      this.#camera = pub.stream.getVideoTracks()[0] ?? null;
      this.#screen = screen;
      track.addEventListener("ended", () => void this.shareScreen(false).catch(() => undefined));
      await pub.replaceTrack("video", track);
    } else {
      const screen = this.#screen;
      this.#screen = undefined;
      await pub.replaceTrack("video", this.#camera);
      this.#camera = null;
      for (const t of screen?.getTracks() ?? []) t.stop();
    }
    this.dispatchEvent(new CustomEvent("localstream", { detail: { stream: pub.stream } }));
  }
}
