// EventTarget-based stand-ins for @cascade/call's CallAgent, Call and Meeting, with
// MediaStream-like objects, for the component tests. They record what the components ask.

import type { Call, CallAgent, CallState, EndReason, Meeting } from "@cascade/call";

export class FakeTrack {
  readyState: "live" | "ended" = "live";
  enabled = true;
  constructor(readonly kind: "audio" | "video") {}
}

/** Extends the environment's MediaStream (happy-dom checks `srcObject`'s type) with fake tracks. */
export class FakeStream extends MediaStream {
  readonly tracks: FakeTrack[] = [];
  constructor(opts: { audio?: boolean; video?: boolean } = { audio: true, video: true }) {
    super();
    if (opts.audio !== false) this.tracks.push(new FakeTrack("audio"));
    if (opts.video !== false) this.tracks.push(new FakeTrack("video"));
  }
  override getTracks(): MediaStreamTrack[] {
    return [...this.tracks] as unknown as MediaStreamTrack[];
  }
  override getVideoTracks(): MediaStreamTrack[] {
    return this.tracks.filter((t) => t.kind === "video") as unknown as MediaStreamTrack[];
  }
  override getAudioTracks(): MediaStreamTrack[] {
    return this.tracks.filter((t) => t.kind === "audio") as unknown as MediaStreamTrack[];
  }
  addVideo(): void {
    const track = new FakeTrack("video");
    this.tracks.push(track);
    this.dispatchEvent(Object.assign(new Event("addtrack"), { track }));
  }
  asStream(): MediaStream {
    return this as unknown as MediaStream;
  }
}

export class FakeCall extends EventTarget {
  state: CallState = "ringing";
  endReason: EndReason | undefined;
  startedAt: number | undefined;
  localStream: MediaStream | undefined;
  remoteStream: MediaStream | undefined;
  /** A stand-in subscription that records preferSize(width, height). */
  subscription: { preferred: [number, number][]; preferSize(w: number, h: number): Promise<void> } | undefined;
  /** Every method the component called, in order, e.g. "accept", "setMuted:audio:true". */
  readonly log: string[] = [];

  constructor(
    readonly peer: string,
    readonly direction: "outgoing" | "incoming",
    readonly id = `call-${peer}`,
  ) {
    super();
  }

  async accept(): Promise<void> {
    this.log.push("accept");
  }
  async decline(): Promise<void> {
    this.log.push("decline");
  }
  async hangup(): Promise<void> {
    this.log.push("hangup");
  }
  setMuted(kind: "audio" | "video", muted: boolean): void {
    this.log.push(`setMuted:${kind}:${muted}`);
  }
  async shareScreen(on: boolean): Promise<void> {
    this.log.push(`shareScreen:${on}`);
  }

  /** Moves to a state the way the call package does: fields first, then the event. */
  setState(state: CallState, fields: { startedAt?: number; endReason?: EndReason } = {}): void {
    this.state = state;
    if (fields.startedAt !== undefined) this.startedAt = fields.startedAt;
    if (fields.endReason !== undefined) this.endReason = fields.endReason;
    this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
    if (state === "ended") this.dispatchEvent(new CustomEvent("ended", { detail: { reason: this.endReason } }));
  }

  setRemote(stream: FakeStream): void {
    const preferred: [number, number][] = [];
    this.subscription = {
      preferred,
      async preferSize(w: number, h: number) {
        preferred.push([w, h]);
      },
    };
    this.remoteStream = stream.asStream();
    this.dispatchEvent(new CustomEvent("remotestream", { detail: { stream: this.remoteStream } }));
  }

  asCall(): Call {
    return this as unknown as Call;
  }
}

export class FakeAgent extends EventTarget {
  current: FakeCall | undefined;
  readonly dialed: { user: string; media: unknown }[] = [];

  async call(user: string, media?: { audio?: boolean; video?: boolean }): Promise<Call> {
    this.dialed.push({ user, media });
    const call = new FakeCall(user, "outgoing");
    call.localStream = new FakeStream().asStream();
    this.current = call;
    return call.asCall();
  }

  /** An invite arrives from `peer`. */
  ring(peer: string): FakeCall {
    const call = new FakeCall(peer, "incoming");
    this.current = call;
    this.dispatchEvent(new CustomEvent("incoming", { detail: { call } }));
    return call;
  }

  async close(): Promise<void> {}

  asAgent(): CallAgent {
    return this as unknown as CallAgent;
  }
}

export class FakeMeeting extends EventTarget {
  readonly participants = new Map<string, { user: string; stream?: MediaStream }>();
  readonly localStream = new FakeStream().asStream();
  activeSpeaker: string | undefined;
  readonly preferred: { resource: string; width: number; height: number }[] = [];
  readonly log: string[] = [];

  join(user: string, resource: string, stream?: FakeStream): void {
    this.participants.set(resource, { user, ...(stream ? { stream: stream.asStream() } : {}) });
    this.dispatchEvent(new CustomEvent("participant_joined", { detail: { user, resource } }));
    if (stream) this.dispatchEvent(new CustomEvent("track", { detail: { user, resource, stream: stream.asStream() } }));
  }
  part(resource: string): void {
    const p = this.participants.get(resource);
    this.participants.delete(resource);
    this.dispatchEvent(new CustomEvent("participant_left", { detail: { user: p?.user, resource } }));
  }
  speak(resource: string): void {
    this.activeSpeaker = resource;
    const user = this.participants.get(resource)?.user;
    this.dispatchEvent(new CustomEvent("active_speaker", { detail: { user, resource } }));
  }

  setMuted(kind: "audio" | "video", muted: boolean): void {
    this.log.push(`setMuted:${kind}:${muted}`);
  }
  async preferSize(resource: string, width: number, height: number): Promise<void> {
    this.preferred.push({ resource, width, height });
  }
  async leave(): Promise<void> {
    this.log.push("leave");
  }

  asMeeting(): Meeting {
    return this as unknown as Meeting;
  }
}

/** A ResizeObserver whose callbacks the test fires by hand. */
export class FakeResizeObserver {
  static instances: FakeResizeObserver[] = [];
  readonly targets = new Set<Element>();
  constructor(readonly callback: ResizeObserverCallback) {
    FakeResizeObserver.instances.push(this);
  }
  observe(target: Element): void {
    this.targets.add(target);
  }
  unobserve(target: Element): void {
    this.targets.delete(target);
  }
  disconnect(): void {
    this.targets.clear();
  }
  /** Reports a new content size for `target` to the observers watching it. */
  static resize(target: Element, width: number, height: number): void {
    for (const ro of FakeResizeObserver.instances) {
      if (!ro.targets.has(target)) continue;
      const entry = { target, contentRect: { width, height } } as unknown as ResizeObserverEntry;
      ro.callback([entry], ro as unknown as ResizeObserver);
    }
  }
}
