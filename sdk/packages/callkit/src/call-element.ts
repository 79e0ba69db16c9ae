// `<cascade-call>`: the 1:1 call screen over a `CallAgent` of @cascade/call. It owns only
// presentation: which screen shows (dialer, incoming, in call, ended), the videos, the
// controls and the timer. Every action goes to the `Call` (accept, decline, hangup,
// setMuted, shareScreen) or to the agent (call); no WebRTC here.

import type { Call, CallAgent, CallState } from "@cascade/call";
import { endReasonText, formatDuration, initials, statusText } from "./format.js";
import { icons } from "./icons.js";
import { Ringer } from "./ring.js";
import { baseCss, callCss } from "./styles.js";
import { hasVideo, playVideo, setStream } from "./media.js";
import { setPressed } from "./dom.js";
import { SizeReporter } from "./size.js";

/** The screen `<cascade-call>` shows; also its root's `data-screen`. */
export type CallScreen = "idle" | "incoming" | "call" | "ended";

/** Detail of the element's `call` event, sent whenever it starts showing another call. */
export interface CallChangeDetail {
  call: Call | undefined;
}

const template = `
<style>${baseCss}${callCss}</style>
<div class="root" part="root" data-screen="idle">
  <span class="sr-only" aria-hidden="true" data-testid="call-state" data-ref="state">idle</span>
  <p class="sr-only" role="status" aria-live="polite" data-ref="announce"></p>

  <section class="screen center idle" part="idle" data-ref="idle" aria-label="Call">
    <div class="avatar" aria-hidden="true">${icons.phone}</div>
    <h2 class="title">Ready for calls</h2>
    <p class="me" data-ref="me" hidden></p>
    <form class="dialer" part="dialer" data-ref="dialer" hidden>
      <label class="sr-only" for="dialer-input">User to call</label>
      <div class="field">
        <input id="dialer-input" data-testid="dialer-input" data-ref="dialerInput" part="dialer-input"
          placeholder="Who do you want to call?" autocomplete="off" autocapitalize="none"
          spellcheck="false" enterkeyhint="go" required>
        <button class="ctl success" type="submit" data-testid="dialer-call" data-ref="dialerCall"
          part="button dialer-call" aria-label="Call" title="Call">${icons.phone}</button>
      </div>
      <p class="error" role="alert" data-ref="error"></p>
    </form>
  </section>

  <section class="screen center incoming" part="incoming" data-testid="incoming" data-ref="incoming"
    role="dialog" aria-labelledby="incoming-name" hidden>
    <div class="pulse" aria-hidden="true">
      <span class="wave"></span><span class="wave"></span><span class="wave"></span>
      <div class="avatar" part="avatar" data-ref="incomingAvatar"></div>
    </div>
    <h2 class="peer-name" id="incoming-name" data-ref="incomingName"></h2>
    <p class="sub" data-ref="incomingSub">Incoming video call</p>
    <div class="answer">
      <div class="labeled">
        <button class="ctl danger big" type="button" data-testid="decline" data-ref="decline"
          part="button decline" aria-label="Decline" title="Decline">${icons.hangup}</button>
        <span aria-hidden="true">Decline</span>
      </div>
      <div class="labeled">
        <button class="ctl success big" type="button" data-testid="accept" data-ref="accept"
          part="button accept" aria-label="Accept" title="Accept">${icons.phone}</button>
        <span aria-hidden="true">Accept</span>
      </div>
    </div>
  </section>

  <section class="screen call" part="call" data-ref="call" aria-label="Call in progress" hidden>
    <div class="stage" data-ref="stage" data-remote="none">
      <video class="remote" part="remote-video" data-testid="remote-video" data-ref="remote"
        autoplay playsinline></video>
    </div>
    <div class="local-wrap" part="local" data-ref="localWrap">
      <video class="local" part="local-video" data-testid="local-video" data-ref="local"
        autoplay playsinline muted></video>
      <div class="cam-off" aria-label="Camera off">${icons.videoOff}</div>
    </div>
    <div class="veil" aria-hidden="true"></div>
    <header class="top" part="header">
      <div class="who">
        <div class="avatar calling" part="avatar" data-ref="callAvatar" aria-hidden="true"></div>
        <strong data-ref="topName"></strong>
        <span class="line"><span class="dot" aria-hidden="true"></span>
          <span data-ref="topStatus"></span>
          <span data-testid="timer" data-ref="timer" part="timer" role="timer" hidden>00:00</span>
        </span>
      </div>
    </header>
    <div class="banner" part="reconnecting" data-testid="reconnecting" data-ref="banner" role="status" hidden>
      <span class="spinner" aria-hidden="true"></span>Reconnecting…
    </div>
    <button class="pill sound" type="button" data-ref="sound" hidden>${icons.volume}Tap to turn on sound</button>
    <nav class="controls" part="controls" aria-label="Call controls">
      <div class="bar">
        <button class="ctl" type="button" data-testid="mute-audio" data-ref="muteAudio" part="button mute-audio"
          aria-pressed="false" aria-label="Mute microphone" title="Mute microphone">
          <span class="off-pressed">${icons.mic}</span><span class="on-pressed">${icons.micOff}</span></button>
        <button class="ctl" type="button" data-testid="mute-video" data-ref="muteVideo" part="button mute-video"
          aria-pressed="false" aria-label="Turn camera off" title="Turn camera off">
          <span class="off-pressed">${icons.video}</span><span class="on-pressed">${icons.videoOff}</span></button>
        <button class="ctl" type="button" data-testid="share-screen" data-ref="share" part="button share-screen"
          aria-pressed="false" aria-label="Share screen" title="Share screen">${icons.screen}</button>
        <button class="ctl danger" type="button" data-testid="hangup" data-ref="hangup" part="button hangup"
          aria-label="End call" title="End call">${icons.hangup}</button>
      </div>
    </nav>
  </section>

  <section class="screen center ended" part="ended" data-ref="ended" aria-label="Call ended" hidden>
    <div class="avatar" part="avatar" data-ref="endedAvatar" aria-hidden="true"></div>
    <h2 class="peer-name" data-ref="endedName"></h2>
    <p class="end-reason" data-testid="end-reason" data-ref="endReason" part="end-reason"></p>
    <p class="sub" data-ref="endedDuration" hidden></p>
    <div class="actions">
      <button class="pill accent" type="button" data-ref="callBack" hidden>Call back</button>
      <button class="pill" type="button" data-ref="done">Done</button>
    </div>
  </section>
</div>`;

const REFS = [
  "state", "announce", "idle", "me", "dialer", "dialerInput", "dialerCall", "error",
  "incoming", "incomingAvatar", "incomingName", "incomingSub", "decline", "accept",
  "call", "stage", "remote", "localWrap", "local", "callAvatar",
  "topName", "topStatus", "timer", "banner", "sound", "muteAudio", "muteVideo", "share", "hangup",
  "ended", "endedAvatar", "endedName", "endReason", "endedDuration", "callBack", "done",
] as const;
type Ref = (typeof REFS)[number];

/**
 * `<cascade-call>`: set `agent` (a `CallAgent`) and it shows incoming calls; with the
 * `dialer` attribute it also offers a field to call someone. `call` may be set too, for
 * a call the application placed itself. Attributes: `dialer`, `user` (shown on the
 * dialer), `ring-sound` (a synthesised ringtone while an incoming call rings).
 * Events: `call` (CustomEvent<{call}>) when it starts showing another call, `cascade-error`
 * (CustomEvent<{error}>) when an action of the user failed.
 */
export class CascadeCallElement extends HTMLElement {
  static readonly observedAttributes = ["dialer", "user", "ring-sound"];

  readonly #els: Record<Ref, HTMLElement>;
  #agent: CallAgent | undefined;
  #call: Call | undefined;
  #unbindCall: (() => void) | undefined;
  #unbindRemote: (() => void) | undefined;
  #ticker: ReturnType<typeof setInterval> | undefined;
  #muted = { audio: false, video: false };
  #sharing = false;
  #screen: CallScreen | undefined;
  #dialing = false;
  readonly #ringer = new Ringer();
  #remoteObserver: ResizeObserver | undefined;
  /** The remote video's size, as layer preferences of the call's subscription. */
  readonly #remoteSize = new SizeReporter(
    (width, height) => this.#call?.subscription?.preferSize(width, height) ?? Promise.resolve(),
    (error) => this.#fail(error),
  );

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = template;
    const els = {} as Record<Ref, HTMLElement>;
    for (const ref of REFS) {
      const el = root.querySelector<HTMLElement>(`[data-ref="${ref}"]`);
      if (!el) throw new Error(`cascade-call template lacks ${ref}`);
      els[ref] = el;
    }
    this.#els = els;
    this.#wire();
  }

  /** The agent whose incoming calls this element shows and through which it dials. */
  get agent(): CallAgent | undefined {
    return this.#agent;
  }
  set agent(agent: CallAgent | undefined) {
    if (agent === this.#agent) return;
    this.#agent?.removeEventListener("incoming", this.#onAgentCall);
    this.#agent?.removeEventListener("outgoing", this.#onAgentCall);
    this.#agent = agent;
    // "outgoing" (a call the application placed through the agent) is shown like an invite.
    agent?.addEventListener("incoming", this.#onAgentCall);
    agent?.addEventListener("outgoing", this.#onAgentCall);
    const current = agent?.current;
    if (current && current !== this.#call && !this.#isLive()) this.#show(current);
    else this.#render();
  }

  /** The call on screen (the last one, until dismissed, once it ended). */
  get call(): Call | undefined {
    return this.#call;
  }
  set call(call: Call | undefined) {
    this.#show(call);
  }

  /** Which screen shows now. */
  get screen(): CallScreen {
    return this.#screenFor(this.#call);
  }

  /** Calls `user` through the agent (video and audio) and shows the call. */
  async dial(user: string, media: { audio?: boolean; video?: boolean } = { audio: true, video: true }): Promise<Call> {
    const agent = this.#agent;
    if (!agent) throw new Error("cascade-call: no agent set");
    this.#dialing = true;
    this.#els.error.textContent = "";
    this.#render();
    try {
      const call = await agent.call(user, media);
      this.#show(call);
      return call;
    } finally {
      this.#dialing = false;
      this.#render();
    }
  }

  attributeChangedCallback(): void {
    this.#render();
  }

  connectedCallback(): void {
    const RO = globalThis.ResizeObserver;
    if (typeof RO === "function") {
      this.#remoteObserver ??= new RO((entries) => {
        for (const entry of entries) this.#remoteSize.resized(entry.contentRect);
      });
      this.#remoteObserver.observe(this.#els.remote);
    }
    this.#render();
  }

  disconnectedCallback(): void {
    this.#remoteObserver?.disconnect();
    this.#remoteSize.cancel();
    this.#stopTicker();
    this.#ringer.stop();
  }

  #isLive(): boolean {
    return this.#call !== undefined && this.#call.state !== "ended";
  }

  readonly #onAgentCall = (e: Event): void => {
    const call = (e as CustomEvent<{ call: Call }>).detail?.call;
    // While a call is live the agent answers a new invite busy; keep showing ours.
    if (call && !this.#isLive()) this.#show(call);
  };

  #show(call: Call | undefined): void {
    if (call === this.#call) return;
    this.#unbindCall?.();
    this.#unbindCall = undefined;
    this.#unbindRemote?.();
    this.#unbindRemote = undefined;
    this.#call = call;
    this.#remoteSize.reset();
    this.#muted = { audio: false, video: false };
    this.#sharing = false;
    if (call) {
      const update = (): void => this.#render();
      const types = ["state", "remotestream", "localstream", "ended"];
      for (const t of types) call.addEventListener(t, update);
      this.#unbindCall = () => {
        for (const t of types) call.removeEventListener(t, update);
      };
    }
    this.#render();
    this.dispatchEvent(new CustomEvent<CallChangeDetail>("call", { detail: { call }, bubbles: true, composed: true }));
  }

  #wire(): void {
    const els = this.#els;
    els.dialer.addEventListener("submit", (e) => {
      e.preventDefault();
      const user = (els.dialerInput as HTMLInputElement).value.trim();
      if (!user || this.#dialing) return;
      this.dial(user).catch((err: unknown) => {
        els.error.textContent = describeError(err);
        this.#fail(err);
      });
    });
    els.accept.addEventListener("click", () => this.#act((c) => c.accept()));
    els.decline.addEventListener("click", () => this.#act((c) => c.decline()));
    els.hangup.addEventListener("click", () => this.#act((c) => c.hangup()));
    els.muteAudio.addEventListener("click", () => this.#toggleMute("audio"));
    els.muteVideo.addEventListener("click", () => this.#toggleMute("video"));
    els.share.addEventListener("click", () => void this.#toggleShare());
    els.done.addEventListener("click", () => this.#show(undefined));
    els.callBack.addEventListener("click", () => {
      const peer = this.#call?.peer;
      if (!peer) return;
      this.dial(peer).catch((err: unknown) => {
        this.#show(undefined);
        els.error.textContent = describeError(err);
        this.#fail(err);
      });
    });
    els.sound.addEventListener("click", () => {
      const remote = els.remote as HTMLVideoElement;
      remote.muted = false;
      els.sound.hidden = true;
      playVideo(remote, () => undefined);
    });
    this.shadowRoot?.addEventListener("keydown", (e) => {
      const ke = e as KeyboardEvent;
      if (ke.key === "Escape" && this.#screenFor(this.#call) === "incoming") {
        ke.preventDefault();
        this.#act((c) => c.decline());
      }
    });
  }

  #act(action: (c: Call) => Promise<void>): void {
    const call = this.#call;
    if (!call) return;
    action(call).catch((err: unknown) => this.#fail(err));
  }

  #fail(error: unknown): void {
    this.dispatchEvent(new CustomEvent("cascade-error", { detail: { error } }));
  }

  #toggleMute(kind: "audio" | "video"): void {
    const call = this.#call;
    if (!call) return;
    this.#muted[kind] = !this.#muted[kind];
    call.setMuted(kind, this.#muted[kind]);
    this.#render();
  }

  async #toggleShare(): Promise<void> {
    const call = this.#call;
    if (!call) return;
    const on = !this.#sharing;
    (this.#els.share as HTMLButtonElement).disabled = true;
    try {
      await call.shareScreen(on);
      if (call === this.#call) this.#sharing = on;
    } catch (err) {
      // Closing the browser's picker is not an error worth reporting.
      if (!(err instanceof Error && err.name === "NotAllowedError")) this.#fail(err);
    } finally {
      (this.#els.share as HTMLButtonElement).disabled = false;
      this.#render();
    }
  }

  #screenFor(call: Call | undefined): CallScreen {
    if (!call) return "idle";
    if (call.state === "ended") return "ended";
    if (call.state === "ringing" && call.direction === "incoming") return "incoming";
    return "call";
  }

  #render(): void {
    const els = this.#els;
    const call = this.#call;
    const screen = this.#screenFor(call);
    const state: CallState | "idle" = call?.state ?? "idle";
    const root = els.state.parentElement as HTMLElement;
    root.dataset.screen = screen;
    els.state.textContent = state;
    els.idle.hidden = screen !== "idle";
    els.incoming.hidden = screen !== "incoming";
    els.call.hidden = screen !== "call";
    els.ended.hidden = screen !== "ended";

    // Idle: the dialer and who we are.
    const user = this.getAttribute("user");
    els.me.hidden = !user;
    els.me.textContent = user ? `Signed in as ${user}` : "";
    els.dialer.hidden = !this.hasAttribute("dialer");
    (els.dialerCall as HTMLButtonElement).disabled = this.#dialing;
    (els.dialerInput as HTMLInputElement).disabled = this.#dialing;

    if (call) this.#renderCall(call, screen);
    else {
      setStream(els.remote as HTMLVideoElement, undefined);
      setStream(els.local as HTMLVideoElement, undefined);
      this.#stopTicker();
    }

    const ring = screen === "incoming" && this.hasAttribute("ring-sound");
    if (ring) this.#ringer.start();
    else this.#ringer.stop();

    if (screen !== this.#screen) {
      this.#screen = screen;
      els.announce.textContent = this.#announcement(call, screen);
      // An incoming call takes the focus (Enter answers, Escape declines); otherwise focus
      // moves with the screen only when it was on a control of ours that just got hidden.
      const focused = this.shadowRoot?.activeElement ?? null;
      if (this.isConnected && (screen === "incoming" || (focused instanceof HTMLElement && !isShown(focused)))) {
        const target = { idle: els.dialerInput, incoming: els.accept, call: els.hangup, ended: els.done }[screen];
        if (isShown(target)) target.focus();
      }
    }
  }

  #renderCall(call: Call, screen: CallScreen): void {
    const els = this.#els;
    const peer = call.peer;
    const letters = initials(peer);
    for (const el of [els.incomingAvatar, els.callAvatar, els.endedAvatar]) el.textContent = letters;
    for (const el of [els.incomingName, els.topName, els.endedName]) el.textContent = peer;
    const video = call.localStream ? hasVideo(call.localStream) : true;
    els.incomingSub.textContent = video ? "Incoming video call" : "Incoming call";

    // In call.
    els.call.dataset.state = call.state;
    const remote = els.remote as HTMLVideoElement;
    if (remote.srcObject !== (call.remoteStream ?? null)) {
      this.#unbindRemote?.();
      this.#unbindRemote = undefined;
      const stream = call.remoteStream;
      if (stream) {
        const update = (): void => this.#render();
        stream.addEventListener("addtrack", update);
        stream.addEventListener("removetrack", update);
        this.#unbindRemote = () => {
          stream.removeEventListener("addtrack", update);
          stream.removeEventListener("removetrack", update);
        };
      }
      // A new remote stream comes with a new subscription: ask for the size the video has.
      this.#remoteSize.reset();
      this.#remoteSize.resized(remote.getBoundingClientRect());
      setStream(remote, stream, () => {
        // Autoplay with sound was refused: play muted and offer a button to unmute.
        remote.muted = true;
        els.sound.hidden = false;
        playVideo(remote, () => undefined);
      });
    }
    const remoteVideo = call.remoteStream !== undefined && hasVideo(call.remoteStream) && call.state !== "ringing";
    els.stage.dataset.remote = remoteVideo ? "video" : "none";
    setStream(els.local as HTMLVideoElement, call.localStream);
    els.localWrap.classList.toggle("camera-off", this.#muted.video || !call.localStream || !hasVideo(call.localStream));
    els.localWrap.classList.toggle("screen-share", this.#sharing);

    const status = statusText(call.state, call.direction);
    const counting = call.startedAt !== undefined && (call.state === "active" || call.state === "reconnecting");
    els.topStatus.textContent = counting && call.state === "active" ? "" : status;
    els.topStatus.hidden = counting && call.state === "active";
    els.timer.hidden = !counting;
    if (counting) this.#startTicker();
    else this.#stopTicker();
    this.#tick();
    els.banner.hidden = call.state !== "reconnecting";
    if (screen !== "call") els.sound.hidden = true;

    setPressed(els.muteAudio, this.#muted.audio, "Unmute microphone", "Mute microphone");
    setPressed(els.muteVideo, this.#muted.video, "Turn camera on", "Turn camera off");
    setPressed(els.share, this.#sharing, "Stop sharing screen", "Share screen");
    els.share.hidden = typeof navigator === "undefined" || typeof navigator.mediaDevices?.getDisplayMedia !== "function";
    const ringingOut = call.state === "ringing" && call.direction === "outgoing";
    els.hangup.setAttribute("aria-label", ringingOut ? "Cancel call" : "End call");
    els.hangup.title = ringingOut ? "Cancel call" : "End call";

    // Ended.
    els.endReason.textContent = endReasonText(call.endReason, peer, call.direction);
    if (call.endReason) els.endReason.dataset.reason = call.endReason;
    else delete els.endReason.dataset.reason;
    const talked = call.startedAt !== undefined && call.state === "ended";
    els.endedDuration.hidden = !talked;
    els.endedDuration.textContent = talked ? `Duration ${els.timer.textContent ?? ""}` : "";
    els.callBack.hidden = !this.hasAttribute("dialer") || !this.#agent;
  }

  #announcement(call: Call | undefined, screen: CallScreen): string {
    if (!call) return "";
    switch (screen) {
      case "incoming":
        return `Incoming call from ${call.peer}`;
      case "ended":
        return endReasonText(call.endReason, call.peer, call.direction);
      default:
        return statusText(call.state, call.direction);
    }
  }

  #tick(): void {
    const call = this.#call;
    if (call?.startedAt === undefined || call.state === "ended") return;
    this.#els.timer.textContent = formatDuration(Date.now() - call.startedAt);
  }

  #startTicker(): void {
    if (this.#ticker === undefined) this.#ticker = setInterval(() => this.#tick(), 1000);
  }

  #stopTicker(): void {
    if (this.#ticker !== undefined) clearInterval(this.#ticker);
    this.#ticker = undefined;
  }
}


function describeError(err: unknown): string {
  if (err && typeof err === "object") {
    const code = (err as { code?: unknown }).code;
    if (code === "busy") return "That user is busy";
    if (typeof code === "string" && code) return `Could not call (${code})`;
    if (err instanceof Error && err.name === "NotAllowedError") return "Camera or microphone access was refused";
    if (err instanceof Error && err.message) return err.message;
  }
  return "Could not place the call";
}

/** Whether neither the element nor an ancestor in the shadow tree is `hidden`. */
function isShown(el: HTMLElement): boolean {
  for (let e: HTMLElement | null = el; e; e = e.parentElement) if (e.hidden) return false;
  return true;
}
