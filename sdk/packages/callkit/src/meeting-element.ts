// `<cascade-meeting>`: the meeting screen over a `Meeting` of @cascade/call: a responsive
// grid with one tile per participant (and one for the local camera), the active speaker
// highlighted, and each remote tile asking for the video layer that fits its rendered
// size (ResizeObserver → Meeting.preferSize). Presentation only; no WebRTC here.

import type { Meeting } from "@cascade/call";
import type { Publication } from "@cascade/core";
import { initials } from "./format.js";
import { icons } from "./icons.js";
import { bestGrid } from "./layout.js";
import { hasVideo, setStream } from "./media.js";
import { setPressed } from "./dom.js";
import { SizeReporter } from "./size.js";
import { baseCss, meetingCss } from "./styles.js";

const LOCAL = "local";

const template = `
<style>${baseCss}${meetingCss}</style>
<div class="root" part="root">
  <header class="top" part="header">
    <strong class="room" data-ref="room"></strong>
    <span class="count" data-ref="countWrap">${icons.users}<span data-ref="count">1</span></span>
  </header>
  <div class="grid" part="grid" role="list" aria-label="Participants" data-ref="grid"></div>
  <p class="alone" part="alone" data-ref="alone" role="status">Waiting for others to join…</p>
  <nav class="controls" part="controls" aria-label="Meeting controls">
    <div class="bar">
      <button class="ctl" type="button" data-testid="mute-audio" data-ref="muteAudio" part="button mute-audio"
        aria-pressed="false" aria-label="Mute microphone" title="Mute microphone">
        <span class="off-pressed">${icons.mic}</span><span class="on-pressed">${icons.micOff}</span></button>
      <button class="ctl" type="button" data-testid="mute-video" data-ref="muteVideo" part="button mute-video"
        aria-pressed="false" aria-label="Turn camera off" title="Turn camera off">
        <span class="off-pressed">${icons.video}</span><span class="on-pressed">${icons.videoOff}</span></button>
      <button class="ctl danger" type="button" data-testid="leave" data-ref="leave" part="button leave"
        aria-label="Leave meeting" title="Leave meeting">${icons.leave}</button>
    </div>
  </nav>
  <section class="left-screen" part="left" data-ref="left" role="status" hidden>
    <div class="avatar" aria-hidden="true">${icons.leave}</div>
    <h2 class="title">You left the meeting</h2>
    <p class="sub" data-ref="leftRoom"></p>
  </section>
</div>`;

const REFS = ["room", "countWrap", "count", "grid", "alone", "muteAudio", "muteVideo", "leave", "left", "leftRoom"] as const;
type Ref = (typeof REFS)[number];

interface Tile {
  readonly key: string;
  readonly el: HTMLElement;
  readonly video: HTMLVideoElement;
  user: string;
  resource: string;
  stream: MediaStream | undefined;
  unbindStream: (() => void) | undefined;
  readonly size: SizeReporter;
}

type ParticipantDetail = { user: string; resource: string; stream?: MediaStream };

/** A meeting may also say which publication is the local one (to highlight us speaking). */
type MeetingWithPublication = Meeting & { readonly publication?: Publication; readonly user?: string };

/**
 * `<cascade-meeting>`: set `meeting` (a joined `Meeting`). Attributes: `user` (the local
 * user's name on the local tile), `room` (shown in the header). Events: `leave` once the
 * meeting was left with the leave button, `cascade-error` (CustomEvent<{error}>).
 */
export class CascadeMeetingElement extends HTMLElement {
  static readonly observedAttributes = ["user", "room"];

  readonly #els: Record<Ref, HTMLElement>;
  readonly #tiles = new Map<string, Tile>();
  #meeting: MeetingWithPublication | undefined;
  #unbind: (() => void) | undefined;
  #speaker: { resource?: string; user?: string } = {};
  #muted = { audio: false, video: false };
  #gridObserver: ResizeObserver | undefined;
  #tileObserver: ResizeObserver | undefined;

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = template;
    const els = {} as Record<Ref, HTMLElement>;
    for (const ref of REFS) {
      const el = root.querySelector<HTMLElement>(`[data-ref="${ref}"]`);
      if (!el) throw new Error(`cascade-meeting template lacks ${ref}`);
      els[ref] = el;
    }
    this.#els = els;
    els.muteAudio.addEventListener("click", () => this.#toggleMute("audio"));
    els.muteVideo.addEventListener("click", () => this.#toggleMute("video"));
    els.leave.addEventListener("click", () => void this.#leave());
  }

  /** The meeting on screen. */
  get meeting(): Meeting | undefined {
    return this.#meeting;
  }
  set meeting(meeting: Meeting | undefined) {
    if (meeting === this.#meeting) return;
    this.#unbind?.();
    this.#unbind = undefined;
    for (const key of [...this.#tiles.keys()]) this.#removeTile(key);
    this.#meeting = meeting;
    this.#muted = { audio: false, video: false };
    this.#speaker = {};
    this.#els.left.hidden = true;
    if (meeting) this.#bind(meeting);
    this.#render();
  }

  connectedCallback(): void {
    const RO = globalThis.ResizeObserver;
    if (typeof RO === "function") {
      this.#gridObserver ??= new RO(() => this.#layout());
      this.#gridObserver.observe(this.#els.grid);
      this.#tileObserver ??= new RO((entries) => {
        for (const entry of entries) this.#tileResized(entry.target as HTMLElement, entry.contentRect);
      });
      for (const tile of this.#tiles.values()) if (tile.key !== LOCAL) this.#tileObserver.observe(tile.el);
    }
    this.#render();
  }

  disconnectedCallback(): void {
    this.#gridObserver?.disconnect();
    this.#tileObserver?.disconnect();
    for (const tile of this.#tiles.values()) tile.size.cancel();
  }

  attributeChangedCallback(): void {
    this.#render();
  }

  #bind(meeting: MeetingWithPublication): void {
    this.#upsertTile(LOCAL, {
      user: this.#localUser(),
      resource: meeting.publication?.resource ?? "",
      stream: meeting.localStream,
    });
    for (const [resource, p] of meeting.participants) {
      this.#upsertTile(resource, { user: p.user, resource, ...(p.stream ? { stream: p.stream } : {}) });
    }
    if (meeting.activeSpeaker) this.#speaker = { resource: meeting.activeSpeaker };
    const detail = (e: Event): ParticipantDetail => (e as CustomEvent<ParticipantDetail>).detail;
    const handlers: Record<string, (e: Event) => void> = {
      participant_joined: (e) => {
        const d = detail(e);
        const stream = d.stream ?? meeting.participants.get(d.resource)?.stream;
        this.#upsertTile(d.resource, { user: d.user, resource: d.resource, ...(stream ? { stream } : {}) });
        this.#render();
      },
      participant_left: (e) => {
        this.#removeTile(detail(e).resource);
        this.#render();
      },
      track: (e) => {
        const d = detail(e);
        this.#upsertTile(d.resource, { user: d.user, resource: d.resource, ...(d.stream ? { stream: d.stream } : {}) });
        this.#render();
      },
      active_speaker: (e) => {
        const d = detail(e);
        this.#speaker = { resource: d.resource, user: d.user };
        this.#render();
      },
    };
    for (const [type, handler] of Object.entries(handlers)) meeting.addEventListener(type, handler);
    this.#unbind = () => {
      for (const [type, handler] of Object.entries(handlers)) meeting.removeEventListener(type, handler);
    };
  }

  #localUser(): string {
    return this.getAttribute("user") ?? this.#meeting?.user ?? "";
  }

  #upsertTile(key: string, p: { user: string; resource: string; stream?: MediaStream }): void {
    let tile = this.#tiles.get(key);
    if (!tile) {
      const el = document.createElement("div");
      el.className = key === LOCAL ? "tile local" : "tile";
      el.setAttribute("part", key === LOCAL ? "tile local-tile" : "tile");
      el.setAttribute("role", "listitem");
      el.dataset.testid = "tile";
      const video = document.createElement("video");
      video.autoplay = true;
      video.playsInline = true;
      video.setAttribute("playsinline", "");
      if (key === LOCAL) {
        video.muted = true;
        video.dataset.testid = "local-video";
      }
      const avatar = document.createElement("div");
      avatar.className = "avatar";
      avatar.setAttribute("aria-hidden", "true");
      const name = document.createElement("span");
      name.className = "name";
      name.setAttribute("part", "name");
      const mic = document.createElement("span");
      mic.className = "mic";
      mic.setAttribute("aria-label", "Microphone off");
      mic.innerHTML = icons.micOff;
      const label = document.createElement("span");
      name.append(mic, label);
      el.append(video, avatar, name);
      const size = new SizeReporter(
        (width, height) => this.#meeting?.preferSize(this.#tiles.get(key)?.resource ?? key, width, height) ?? Promise.resolve(),
        (error) => this.dispatchEvent(new CustomEvent("cascade-error", { detail: { error } })),
      );
      tile = { key, el, video, user: p.user, resource: p.resource, stream: undefined, unbindStream: undefined, size };
      this.#tiles.set(key, tile);
      if (key === LOCAL) this.#els.grid.prepend(el);
      else {
        this.#els.grid.append(el);
        this.#tileObserver?.observe(el);
      }
    }
    tile.user = p.user;
    tile.resource = p.resource;
    if (p.stream && p.stream !== tile.stream) {
      tile.unbindStream?.();
      const stream = p.stream;
      const update = (): void => this.#render();
      stream.addEventListener("addtrack", update);
      stream.addEventListener("removetrack", update);
      tile.unbindStream = () => {
        stream.removeEventListener("addtrack", update);
        stream.removeEventListener("removetrack", update);
      };
      tile.stream = stream;
      setStream(tile.video, stream);
      // The subscription exists now: ask again for the size the tile already has.
      if (key !== LOCAL) {
        tile.size.reset();
        tile.size.resized(tile.el.getBoundingClientRect());
      }
    }
  }

  #removeTile(key: string): void {
    const tile = this.#tiles.get(key);
    if (!tile) return;
    this.#tiles.delete(key);
    tile.unbindStream?.();
    tile.size.cancel();
    this.#tileObserver?.unobserve(tile.el);
    setStream(tile.video, undefined);
    tile.el.remove();
  }

  #tileResized(el: HTMLElement, rect: { width: number; height: number }): void {
    const tile = [...this.#tiles.values()].find((t) => t.el === el);
    if (tile && tile.key !== LOCAL) tile.size.resized(rect);
  }

  #toggleMute(kind: "audio" | "video"): void {
    const meeting = this.#meeting;
    if (!meeting) return;
    this.#muted[kind] = !this.#muted[kind];
    meeting.setMuted(kind, this.#muted[kind]);
    this.#render();
  }

  async #leave(): Promise<void> {
    const meeting = this.#meeting;
    if (!meeting) return;
    (this.#els.leave as HTMLButtonElement).disabled = true;
    try {
      await meeting.leave();
      this.#els.left.hidden = false;
      this.dispatchEvent(new CustomEvent("leave", { bubbles: true, composed: true }));
    } catch (error) {
      this.dispatchEvent(new CustomEvent("cascade-error", { detail: { error } }));
    } finally {
      (this.#els.leave as HTMLButtonElement).disabled = false;
    }
  }

  #render(): void {
    const els = this.#els;
    const room = this.getAttribute("room") ?? "";
    els.room.textContent = room || "Meeting";
    els.leftRoom.textContent = room ? `Room ${room}` : "";
    const people = this.#tiles.size;
    els.alone.hidden = !this.#meeting || people > 1;
    els.count.textContent = String(people);
    els.countWrap.setAttribute("aria-label", `${people} ${people === 1 ? "person" : "people"} in the meeting`);
    const localUser = this.#localUser();
    for (const tile of this.#tiles.values()) {
      const local = tile.key === LOCAL;
      if (local) tile.user = localUser;
      const el = tile.el;
      el.dataset.user = tile.user;
      el.dataset.resource = tile.resource;
      const label = local ? (tile.user ? `${tile.user} (you)` : "You") : tile.user || "Guest";
      el.setAttribute("aria-label", label);
      const name = el.querySelector(".name > span:last-child");
      if (name) name.textContent = label;
      const avatar = el.querySelector(".avatar");
      if (avatar) avatar.textContent = initials(tile.user || "You");
      const video = tile.stream !== undefined && hasVideo(tile.stream) && !(local && this.#muted.video);
      el.classList.toggle("no-video", !video);
      el.classList.toggle("audio-off", local && this.#muted.audio);
      const speaking = this.#isSpeaker(tile);
      el.classList.toggle("speaking", speaking);
      if (speaking) el.dataset.speaking = "true";
      else delete el.dataset.speaking;
    }
    setPressed(els.muteAudio, this.#muted.audio, "Unmute microphone", "Mute microphone");
    setPressed(els.muteVideo, this.#muted.video, "Turn camera on", "Turn camera off");
    this.#layout();
  }

  #isSpeaker(tile: Tile): boolean {
    const s = this.#speaker;
    if (s.resource && tile.resource) return s.resource === tile.resource;
    // Without the local publication's URL, recognise ourselves by name.
    return tile.key === LOCAL && !!s.user && s.user === tile.user && !this.#tileFor(s.resource);
  }

  #tileFor(resource: string | undefined): Tile | undefined {
    if (!resource) return undefined;
    return [...this.#tiles.values()].find((t) => t.resource === resource);
  }

  /** Picks the column count and tile size that make the tiles largest in the grid's box. */
  #layout(): void {
    const grid = this.#els.grid;
    const count = Math.max(1, this.#tiles.size);
    const style = getComputedStyle(grid);
    const padX = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight) || 0;
    const padY = parseFloat(style.paddingTop) + parseFloat(style.paddingBottom) || 0;
    const width = grid.clientWidth - padX;
    const height = grid.clientHeight - padY;
    const gap = 10;
    const best = bestGrid(count, width, height, gap);
    grid.style.setProperty("--cols", String(best.cols));
    grid.style.setProperty("--gap", `${gap}px`);
    if (best.tileWidth > 0) {
      grid.style.setProperty("--tile-w", `${Math.floor(best.tileWidth)}px`);
      grid.style.setProperty("--tile-h", `${Math.floor(best.tileHeight)}px`);
    } else {
      grid.style.removeProperty("--tile-w");
      grid.style.removeProperty("--tile-h");
    }
  }
}
