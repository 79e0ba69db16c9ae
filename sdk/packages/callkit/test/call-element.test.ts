// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeAgent, FakeCall, FakeResizeObserver, FakeStream } from "./fakes.js";
import { PREFER_SIZE_DEBOUNCE_MS } from "../src/size.js";
import type { CascadeCallElement } from "../src/call-element.js";
import { defineCallKit } from "../src/index.js";

defineCallKit();

const byId = (el: HTMLElement, id: string): HTMLElement => {
  const found = el.shadowRoot?.querySelector<HTMLElement>(`[data-testid="${id}"]`);
  if (!found) throw new Error(`no [data-testid=${id}]`);
  return found;
};
/** Visible: neither it nor a shadow ancestor carries `hidden`. */
const shown = (el: HTMLElement): boolean => {
  for (let e: HTMLElement | null = el; e; e = e.parentElement) if (e.hidden) return false;
  return true;
};

let el: CascadeCallElement;
let agent: FakeAgent;

beforeEach(() => {
  agent = new FakeAgent();
  el = document.createElement("cascade-call");
  document.body.append(el);
  el.agent = agent.asAgent();
});
afterEach(() => {
  el.remove();
  vi.useRealTimers();
});

describe("<cascade-call>", () => {
  it("is idle without a call and shows the dialer only with the attribute", () => {
    expect(byId(el, "call-state").textContent).toBe("idle");
    expect(shown(byId(el, "dialer-input"))).toBe(false);
    el.setAttribute("dialer", "");
    expect(shown(byId(el, "dialer-input"))).toBe(true);
  });

  it("shows an incoming call with the caller's name, and accept calls accept()", () => {
    const call = agent.ring("bob");
    expect(el.screen).toBe("incoming");
    expect(shown(byId(el, "incoming"))).toBe(true);
    expect(byId(el, "incoming").textContent).toContain("bob");
    expect(byId(el, "call-state").textContent).toBe("ringing");
    byId(el, "accept").click();
    expect(call.log).toEqual(["accept"]);
  });

  it("decline calls decline(), and Escape declines too", () => {
    const call = agent.ring("carol");
    byId(el, "decline").click();
    expect(call.log).toEqual(["decline"]);
    byId(el, "accept").dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true, composed: true }));
    expect(call.log).toEqual(["decline", "decline"]);
  });

  it("switches screens as the call's state changes", () => {
    const call = agent.ring("bob");
    call.setState("connecting");
    expect(el.screen).toBe("call");
    expect(shown(byId(el, "hangup"))).toBe(true);
    expect(shown(byId(el, "incoming"))).toBe(false);
    call.setState("active", { startedAt: Date.now() });
    expect(byId(el, "call-state").textContent).toBe("active");
    call.setState("ended", { endReason: "remote_hangup" });
    expect(el.screen).toBe("ended");
    expect(shown(byId(el, "end-reason"))).toBe(true);
    expect(byId(el, "end-reason").dataset.reason).toBe("remote_hangup");
    expect(byId(el, "end-reason").textContent).toBe("bob ended the call");
    expect(shown(byId(el, "hangup"))).toBe(false);
  });

  it("shows the reconnecting banner only while the state is reconnecting", () => {
    const call = agent.ring("bob");
    const banner = byId(el, "reconnecting");
    expect(shown(banner)).toBe(false);
    call.setState("active", { startedAt: Date.now() });
    expect(shown(banner)).toBe(false);
    call.setState("reconnecting");
    expect(shown(banner)).toBe(true);
    call.setState("active");
    expect(shown(banner)).toBe(false);
  });

  it("counts the timer from startedAt", () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const call = agent.ring("bob");
    call.setState("active", { startedAt: Date.now() - 65_000 });
    const timer = byId(el, "timer");
    expect(shown(timer)).toBe(true);
    expect(timer.textContent).toBe("01:05");
    vi.advanceTimersByTime(2_000);
    expect(timer.textContent).toBe("01:07");
    vi.advanceTimersByTime(3_600_000);
    expect(timer.textContent).toBe("1:01:07");
  });

  it("dials through the agent and shows the outgoing call; hangup cancels it", async () => {
    el.setAttribute("dialer", "");
    const input = byId(el, "dialer-input") as HTMLInputElement;
    input.value = "dave";
    const changes: unknown[] = [];
    el.addEventListener("call", (e) => changes.push((e as CustomEvent).detail.call));
    byId(el, "dialer-call").click();
    await vi.waitFor(() => expect(el.call).toBeDefined());
    expect(agent.dialed).toEqual([{ user: "dave", media: { audio: true, video: true } }]);
    expect(changes).toEqual([el.call]);
    expect(el.screen).toBe("call");
    expect(byId(el, "hangup").getAttribute("aria-label")).toBe("Cancel call");
    byId(el, "hangup").click();
    expect((el.call as unknown as FakeCall).log).toEqual(["hangup"]);
  });

  it("says why a call could not be placed, and reports it", async () => {
    el.setAttribute("dialer", "");
    agent.call = async () => {
      throw Object.assign(new Error("refused"), { code: "busy" });
    };
    const errors: unknown[] = [];
    el.addEventListener("cascade-error", (e) => errors.push((e as CustomEvent).detail.error));
    (byId(el, "dialer-input") as HTMLInputElement).value = "dave";
    byId(el, "dialer-call").click();
    await vi.waitFor(() => expect(errors).toHaveLength(1));
    expect(el.shadowRoot?.querySelector('[role="alert"]')?.textContent).toBe("That user is busy");
    expect(el.screen).toBe("idle");
  });

  it("moves the focus with the screen: accept on an incoming call, then hang-up, then Done", () => {
    const call = agent.ring("bob");
    expect(el.shadowRoot?.activeElement).toBe(byId(el, "accept"));
    call.setState("connecting");
    expect(el.shadowRoot?.activeElement).toBe(byId(el, "hangup"));
    call.setState("ended", { endReason: "hangup" });
    expect(el.shadowRoot?.activeElement?.textContent).toBe("Done");
  });

  it("mute buttons toggle the call's tracks and say so", () => {
    const call = agent.ring("bob");
    call.setState("active", { startedAt: Date.now() });
    byId(el, "mute-audio").click();
    byId(el, "mute-video").click();
    byId(el, "mute-audio").click();
    expect(call.log).toEqual(["setMuted:audio:true", "setMuted:video:true", "setMuted:audio:false"]);
    expect(byId(el, "mute-audio").getAttribute("aria-pressed")).toBe("false");
    expect(byId(el, "mute-video").getAttribute("aria-pressed")).toBe("true");
  });

  it("puts the remote stream on the remote video once it carries video", () => {
    const call = agent.ring("bob");
    call.setState("active", { startedAt: Date.now() });
    const remote = new FakeStream({ audio: true, video: false });
    call.setRemote(remote);
    const video = byId(el, "remote-video") as HTMLVideoElement;
    expect(video.srcObject).toBe(remote);
    const stage = video.parentElement as HTMLElement;
    expect(stage.dataset.remote).toBe("none");
    remote.addVideo();
    expect(stage.dataset.remote).toBe("video");
  });

  it("keeps showing a live call when another invite arrives, and the next one after Done", () => {
    const first = agent.ring("bob");
    first.setState("active", { startedAt: Date.now() });
    agent.ring("eve");
    expect(el.call).toBe(first);
    first.setState("ended", { endReason: "hangup" });
    const done = el.shadowRoot?.querySelector<HTMLButtonElement>('[data-ref="done"]');
    done?.click();
    expect(el.screen).toBe("idle");
    const second = agent.ring("eve");
    expect(el.call).toBe(second);
  });

  it("asks the call's subscription for the layer that fits the remote video", () => {
    const realRO = globalThis.ResizeObserver;
    globalThis.ResizeObserver = FakeResizeObserver as unknown as typeof ResizeObserver;
    FakeResizeObserver.instances = [];
    vi.useFakeTimers();
    try {
      const sized = document.createElement("cascade-call");
      document.body.append(sized);
      const call = new FakeCall("bob", "incoming");
      sized.call = call.asCall();
      call.setState("active", { startedAt: Date.now() });
      call.setRemote(new FakeStream());
      const video = byId(sized, "remote-video");
      FakeResizeObserver.resize(video, 1280, 720);
      FakeResizeObserver.resize(video, 640, 360);
      vi.advanceTimersByTime(PREFER_SIZE_DEBOUNCE_MS);
      expect(call.subscription?.preferred).toEqual([[640, 360]]);
      sized.remove();
    } finally {
      globalThis.ResizeObserver = realRO;
    }
  });
});
