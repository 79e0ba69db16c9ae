// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeMeeting, FakeResizeObserver, FakeStream } from "./fakes.js";
import { defineCallKit } from "../src/index.js";
import type { CascadeMeetingElement } from "../src/meeting-element.js";
import { PREFER_SIZE_DEBOUNCE_MS } from "../src/size.js";

defineCallKit();

const R = (id: string): string => `http://m1.test/rtc/v1/resources/${id}`;
const tiles = (el: HTMLElement): HTMLElement[] => [
  ...(el.shadowRoot?.querySelectorAll<HTMLElement>('[data-testid="tile"]') ?? []),
];
const tile = (el: HTMLElement, resource: string): HTMLElement => {
  const t = tiles(el).find((x) => x.dataset.resource === resource);
  if (!t) throw new Error(`no tile for ${resource}`);
  return t;
};

let el: CascadeMeetingElement;
let meeting: FakeMeeting;
const realRO = globalThis.ResizeObserver;

beforeEach(() => {
  FakeResizeObserver.instances = [];
  globalThis.ResizeObserver = FakeResizeObserver as unknown as typeof ResizeObserver;
  meeting = new FakeMeeting();
  meeting.participants.set(R("a"), { user: "alice", stream: new FakeStream().asStream() });
  el = document.createElement("cascade-meeting");
  el.setAttribute("user", "me");
  el.setAttribute("room", "standup");
  document.body.append(el);
  el.meeting = meeting.asMeeting();
});
afterEach(() => {
  el.remove();
  globalThis.ResizeObserver = realRO;
  vi.useRealTimers();
});

describe("<cascade-meeting>", () => {
  it("shows the local tile and one per participant present at join", () => {
    expect(tiles(el).map((t) => t.dataset.user)).toEqual(["me", "alice"]);
    expect(tile(el, R("a")).getAttribute("aria-label")).toBe("alice");
  });

  it("adds and removes tiles as participants join and leave", () => {
    meeting.join("bob", R("b"), new FakeStream());
    meeting.join("carol", R("c"));
    expect(tiles(el).map((t) => t.dataset.user)).toEqual(["me", "alice", "bob", "carol"]);
    expect((tile(el, R("b")).querySelector("video") as HTMLVideoElement).srcObject).toBeInstanceOf(FakeStream);
    expect(tile(el, R("c")).classList.contains("no-video")).toBe(true);
    meeting.part(R("a"));
    expect(tiles(el).map((t) => t.dataset.user)).toEqual(["me", "bob", "carol"]);
    const alone = el.shadowRoot?.querySelector<HTMLElement>('[part="alone"]');
    expect(alone?.hidden).toBe(true);
    meeting.part(R("b"));
    meeting.part(R("c"));
    expect(tiles(el)).toHaveLength(1);
    expect(alone?.hidden).toBe(false);
  });

  it("highlights the active speaker's tile only", () => {
    meeting.join("bob", R("b"));
    meeting.speak(R("b"));
    expect(tile(el, R("b")).dataset.speaking).toBe("true");
    expect(tile(el, R("b")).classList.contains("speaking")).toBe(true);
    expect(tile(el, R("a")).dataset.speaking).toBeUndefined();
    meeting.speak(R("a"));
    expect(tile(el, R("a")).dataset.speaking).toBe("true");
    expect(tile(el, R("b")).dataset.speaking).toBeUndefined();
    expect(tile(el, R("b")).classList.contains("speaking")).toBe(false);
  });

  it("asks for the layer that fits each remote tile's size, once it holds still", () => {
    vi.useFakeTimers();
    const a = tile(el, R("a"));
    FakeResizeObserver.resize(a, 200, 100);
    FakeResizeObserver.resize(a, 320, 180);
    expect(meeting.preferred).toEqual([]);
    vi.advanceTimersByTime(PREFER_SIZE_DEBOUNCE_MS);
    expect(meeting.preferred).toEqual([{ resource: R("a"), width: 320, height: 180 }]);
    FakeResizeObserver.resize(a, 320, 180);
    vi.advanceTimersByTime(PREFER_SIZE_DEBOUNCE_MS);
    expect(meeting.preferred).toHaveLength(1);
    // The local tile is never asked for.
    const local = tiles(el)[0] as HTMLElement;
    FakeResizeObserver.resize(local, 640, 360);
    vi.advanceTimersByTime(PREFER_SIZE_DEBOUNCE_MS);
    expect(meeting.preferred).toHaveLength(1);
  });

  it("mute and leave go to the meeting", async () => {
    const root = el.shadowRoot as ShadowRoot;
    root.querySelector<HTMLElement>('[data-testid="mute-audio"]')?.click();
    root.querySelector<HTMLElement>('[data-testid="mute-video"]')?.click();
    expect(meeting.log).toEqual(["setMuted:audio:true", "setMuted:video:true"]);
    expect(tiles(el)[0]?.classList.contains("no-video")).toBe(true);
    const left = new Promise((resolve) => el.addEventListener("leave", resolve));
    root.querySelector<HTMLElement>('[data-testid="leave"]')?.click();
    await left;
    expect(meeting.log).toContain("leave");
  });
});
