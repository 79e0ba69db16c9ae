// The /call demo page: a user name, a dialer and <cascade-call>, over `cascade signal`
// and the media server the page came from (see config.ts for where settings come from).
// For tests, `window.cascadeDemo` holds the agent, the call on screen, and every call
// state change as {t, state, reason}; `call=USER` dials at once, `autoaccept` answers.

import { Call, CallAgent } from "@cascade/call";
import { defineCallKit } from "@cascade/callkit";
import { Client } from "@cascade/core";
import { CascadeSignal } from "@cascade/signal";
import {
  flag, mediaAccess, mediaServer, param, rememberUser, rememberedUser, signalToken, signalUrl,
} from "./config.js";
import { type DemoState, describe, showProblem } from "./page.js";

defineCallKit();

const demo: DemoState = { agent: undefined, call: undefined, meeting: undefined, events: [], ready: false };
window.cascadeDemo = demo;

const el = document.getElementById("call") as HTMLElementTagNameMap["cascade-call"];
const signin = document.getElementById("signin") as HTMLFormElement;
const nameInput = document.getElementById("name") as HTMLInputElement;
const who = document.getElementById("who") as HTMLElement;
const net = document.getElementById("net") as HTMLElement;

function watch(call: Call | undefined): void {
  demo.call = call;
  if (!call) return;
  demo.events.push({ t: Date.now(), state: call.state });
  call.addEventListener("state", (e) => {
    const { state, reason } = (e as CustomEvent<{ state: Call["state"]; reason?: string }>).detail;
    const why = reason ?? (state === "ended" ? call.endReason : undefined);
    demo.events.push(why === undefined ? { t: Date.now(), state } : { t: Date.now(), state, reason: why });
  });
}

function setNet(state: "connecting" | "online" | "offline"): void {
  net.hidden = false;
  net.dataset.state = state;
  net.textContent = state === "online" ? "Online" : state === "offline" ? "Reconnecting…" : "Connecting…";
}

async function start(user: string): Promise<void> {
  signin.hidden = true;
  who.hidden = false;
  who.textContent = user;
  el.setAttribute("user", user);
  setNet("connecting");
  const server = await mediaServer();
  const signal = await CascadeSignal.connect({
    url: await signalUrl(),
    token: signalToken(user),
    storage: {
      get: (k) => sessionStorage.getItem(`cascade-demo:${user}:${k}`),
      set: (k, v) => sessionStorage.setItem(`cascade-demo:${user}:${k}`, v),
    },
  });
  signal.addEventListener("open", () => setNet("online"));
  signal.addEventListener("close", () => setNet("offline"));
  setNet("online");
  const agent = new CallAgent({
    signal,
    client: (room) => new Client({ server, ...mediaAccess(user, room) }),
  });
  demo.agent = agent;
  el.addEventListener("call", (e) => watch((e as CustomEvent<{ call: Call | undefined }>).detail.call));
  el.addEventListener("cascade-error", (e) => showProblem(describe((e as CustomEvent<{ error: unknown }>).detail.error)));
  if (flag("autoaccept")) {
    agent.addEventListener("incoming", (e) => {
      const call = (e as CustomEvent<{ call: Call }>).detail.call;
      call.accept().catch((err: unknown) => showProblem(describe(err)));
    });
  }
  el.agent = agent;
  el.hidden = false;
  demo.ready = true;
  const callee = param("call");
  if (callee) await el.dial(callee);
}

function run(user: string): void {
  rememberUser(user);
  start(user).catch((err: unknown) => {
    demo.error = describe(err);
    showProblem(demo.error);
  });
}

const initial = param("user");
if (initial) run(initial);
else {
  signin.hidden = false;
  nameInput.value = rememberedUser() ?? "";
  nameInput.focus();
  signin.addEventListener("submit", (e) => {
    e.preventDefault();
    const user = nameInput.value.trim();
    if (user) run(user);
  });
}
