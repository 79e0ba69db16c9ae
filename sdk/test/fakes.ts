/**
 * Test doubles of the browser APIs the SDK uses (fetch, RTCPeerConnection,
 * EventSource, WebSocket, MediaStream): each records what the code under test did
 * and lets the test play the other side.
 */

/** One request seen by {@link FakeFetch}. */
export interface SeenRequest {
  url: string;
  method: string;
  headers: Headers;
  body: string;
}

type Handler = (r: SeenRequest) => Response | Promise<Response>;

/** A fetch that answers from handlers matched by method and URL prefix, newest first. */
export class FakeFetch {
  readonly requests: SeenRequest[] = [];
  readonly #routes: { method: string; prefix: string; handler: Handler }[] = [];

  on(method: string, prefix: string, handler: Handler): this {
    this.#routes.unshift({ method, prefix, handler });
    return this;
  }

  readonly fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const url = String(input);
    const method = init.method ?? "GET";
    const r: SeenRequest = { url, method, headers: new Headers(init.headers), body: typeof init.body === "string" ? init.body : "" };
    this.requests.push(r);
    const route = this.#routes.find((x) => x.method === method && url.startsWith(x.prefix));
    if (!route) return json(404, { code: "unknown_resource", message: `no route for ${method} ${url}` });
    return route.handler(r);
  };

  find(method: string, prefix = ""): SeenRequest[] {
    return this.requests.filter((r) => r.method === method && r.url.startsWith(prefix));
  }
}

/** A Response with a JSON body. */
export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
}

/** A Response whose `url` is `url` (as after a redirect). */
export function withUrl(resp: Response, url: string): Response {
  Object.defineProperty(resp, "url", { value: url });
  return resp;
}

export const ANSWER =
  "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:srv1\r\na=ice-pwd:srvpwd1\r\na=candidate:1 1 udp 2130706431 127.0.0.1 8443 typ host\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ice-ufrag:srv1\r\na=ice-pwd:srvpwd1\r\n";

let streamIds = 0;

/** A MediaStreamTrack double. */
export class FakeTrack extends EventTarget {
  enabled = true;
  stopped = false;
  contentHint = "";
  readonly id = `t${++streamIds}`;
  constructor(readonly kind: "audio" | "video") {
    super();
  }
  stop(): void {
    this.stopped = true;
  }
}

/** A MediaStream double. */
export class FakeStream {
  readonly #tracks: FakeTrack[];
  constructor(tracks: FakeTrack[] = [], readonly id = `s${++streamIds}`) {
    this.#tracks = [...tracks];
  }
  getTracks(): FakeTrack[] {
    return [...this.#tracks];
  }
  getAudioTracks(): FakeTrack[] {
    return this.#tracks.filter((t) => t.kind === "audio");
  }
  getVideoTracks(): FakeTrack[] {
    return this.#tracks.filter((t) => t.kind === "video");
  }
  addTrack(t: FakeTrack): void {
    if (!this.#tracks.includes(t)) this.#tracks.push(t);
  }
  removeTrack(t: FakeTrack): void {
    const i = this.#tracks.indexOf(t);
    if (i >= 0) this.#tracks.splice(i, 1);
  }
}

/** Camera and microphone. */
export function camera(): MediaStream {
  return new FakeStream([new FakeTrack("audio"), new FakeTrack("video")]) as unknown as MediaStream;
}

/** An RTCPeerConnection double: offers carry ICE credentials that change on an ICE restart. */
export class FakePC extends EventTarget {
  static instances: FakePC[] = [];
  readonly transceivers: { kind: string; init: RTCRtpTransceiverInit; sender: { track: unknown; replaceTrack(t: unknown): Promise<void> } }[] = [];
  localDescription: RTCSessionDescriptionInit | null = null;
  remoteDescription: RTCSessionDescriptionInit | null = null;
  iceConnectionState: RTCIceConnectionState = "new";
  iceGatheringState: RTCIceGatheringState = "complete";
  closed = false;
  #generation = 0;
  stats: Record<string, unknown>[] = [];

  constructor(readonly config: RTCConfiguration = {}) {
    super();
    FakePC.instances.push(this);
  }

  addTransceiver(trackOrKind: FakeTrack | string, init: RTCRtpTransceiverInit = {}) {
    const kind = typeof trackOrKind === "string" ? trackOrKind : trackOrKind.kind;
    const sender = {
      track: typeof trackOrKind === "string" ? null : (trackOrKind as unknown),
      async replaceTrack(t: unknown) {
        sender.track = t;
      },
    };
    const t = { kind, init, sender };
    this.transceivers.push(t);
    return t;
  }

  async createOffer(opts: { iceRestart?: boolean } = {}): Promise<RTCSessionDescriptionInit> {
    if (opts.iceRestart) this.#generation++;
    const g = this.#generation;
    const media = this.transceivers
      .map((t, i) => `m=${t.kind} 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:${i}\r\na=ice-ufrag:cli${g}\r\na=ice-pwd:clipwd${g}\r\na=${t.init.direction ?? "sendrecv"}\r\n`)
      .join("");
    return { type: "offer", sdp: `v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n${media}` };
  }
  async setLocalDescription(d: RTCSessionDescriptionInit): Promise<void> {
    if (d.type === "rollback") return;
    this.localDescription = d;
  }
  async setRemoteDescription(d: RTCSessionDescriptionInit): Promise<void> {
    if (!d.sdp?.startsWith("v=0")) throw new Error("bad sdp");
    this.remoteDescription = d;
  }
  restartIce(): void {}
  getConfiguration(): RTCConfiguration {
    return this.config;
  }
  setConfiguration(c: RTCConfiguration): void {
    (this as { config: RTCConfiguration }).config = c;
  }
  async getStats(): Promise<Map<string, unknown>> {
    return new Map(this.stats.map((s, i) => [String(s.id ?? i), s]));
  }
  close(): void {
    this.closed = true;
  }

  /** Plays an ICE state change. */
  setIce(state: RTCIceConnectionState): void {
    this.iceConnectionState = state;
    this.dispatchEvent(new Event("iceconnectionstatechange"));
  }
  /** Plays a remote track arriving. */
  addRemoteTrack(kind: "audio" | "video", streamId: string): FakeStream {
    const stream = new FakeStream([], streamId);
    const track = new FakeTrack(kind);
    stream.addTrack(track);
    const ev = Object.assign(new Event("track"), { track, streams: [stream] });
    this.dispatchEvent(ev);
    return stream;
  }
  /** Plays a late local candidate. */
  addCandidate(candidate: string, sdpMid = "0"): void {
    this.dispatchEvent(Object.assign(new Event("icecandidate"), { candidate: { candidate, sdpMid } }));
  }
}

/** An EventSource double. */
export class FakeEventSource extends EventTarget {
  static instances: FakeEventSource[] = [];
  readyState = 0;
  constructor(readonly url: string) {
    super();
    FakeEventSource.instances.push(this);
  }
  close(): void {
    this.readyState = 2;
  }
  emit(name: string, data: unknown): void {
    this.dispatchEvent(Object.assign(new Event(name), { data: JSON.stringify(data) }));
  }
  static last(prefix = ""): FakeEventSource {
    const es = [...FakeEventSource.instances].reverse().find((e) => e.url.startsWith(prefix));
    if (!es) throw new Error(`no EventSource for ${prefix}`);
    return es;
  }
}

/** A WebSocket double; the test plays the server. */
export class FakeWebSocket {
  static instances: FakeWebSocket[] = [];
  readyState = 0;
  readonly sent: Record<string, unknown>[] = [];
  closedWith: { code?: number; reason?: string } | undefined;
  onopen: ((ev: Event) => void) | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;

  constructor(readonly url: string) {
    FakeWebSocket.instances.push(this);
  }
  send(data: string): void {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  /** Server side: accept the connection. */
  open(): void {
    this.readyState = 1;
    this.onopen?.(new Event("open"));
  }
  /** Server side: a frame. */
  push(frame: unknown): void {
    this.onmessage?.(Object.assign(new Event("message"), { data: JSON.stringify(frame) }) as MessageEvent);
  }
  /** Server side: close. */
  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.(Object.assign(new Event("close"), { code, reason }) as CloseEvent);
  }
  /** Server side: a failed handshake that only fires `error`. */
  fail(): void {
    this.readyState = 3;
    this.onerror?.(new Event("error"));
  }
  framesOf(type: string): Record<string, unknown>[] {
    return this.sent.filter((f) => f.type === type);
  }
  static last(): FakeWebSocket {
    const ws = FakeWebSocket.instances.at(-1);
    if (!ws) throw new Error("no WebSocket");
    return ws;
  }
}

const realSetTimeout = globalThis.setTimeout;

/** Lets pending promise callbacks and zero-delay timers run (real timers: taken
 *  before a test fakes them). */
export async function flush(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
  await new Promise<void>((r) => realSetTimeout(r, 2));
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}
