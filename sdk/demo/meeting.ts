// The /meeting demo page: a room and a name, then <cascade-meeting> on the media server
// the page came from (see config.ts for where settings come from). For tests,
// `window.cascadeDemo.meeting` is the joined meeting.

import { Meeting } from "@cascade/call";
import { defineCallKit } from "@cascade/callkit";
import { Client } from "@cascade/core";
import { mediaAccess, mediaServer, param, rememberUser, rememberedUser } from "./config.js";
import { type DemoState, describe, showProblem } from "./page.js";

defineCallKit();

const demo: DemoState = { agent: undefined, call: undefined, meeting: undefined, events: [], ready: false };
window.cascadeDemo = demo;

const el = document.getElementById("meeting") as HTMLElementTagNameMap["cascade-meeting"];
const signin = document.getElementById("signin") as HTMLFormElement;
const roomInput = document.getElementById("room") as HTMLInputElement;
const nameInput = document.getElementById("name") as HTMLInputElement;
const who = document.getElementById("who") as HTMLElement;
const again = document.getElementById("again") as HTMLElement;
const rejoin = document.getElementById("rejoin") as HTMLButtonElement;

let joined: { user: string; room: string } | undefined;

async function join(user: string, room: string): Promise<void> {
  signin.hidden = true;
  again.hidden = true;
  who.hidden = false;
  who.textContent = `${user} · ${room}`;
  const client = new Client({ server: await mediaServer(), ...mediaAccess(user, room) });
  const meeting = await Meeting.join({ client, media: { audio: true, video: true } });
  demo.meeting = meeting;
  el.setAttribute("user", user);
  el.setAttribute("room", room);
  el.meeting = meeting;
  el.hidden = false;
  demo.ready = true;
  joined = { user, room };
}

function run(user: string, room: string): void {
  rememberUser(user);
  join(user, room).catch((err: unknown) => {
    demo.error = describe(err);
    showProblem(demo.error);
  });
}

el.addEventListener("leave", () => {
  demo.ready = false;
  again.hidden = false;
});
el.addEventListener("cascade-error", (e) => showProblem(describe((e as CustomEvent<{ error: unknown }>).detail.error)));
rejoin.addEventListener("click", () => {
  if (!joined) return;
  el.meeting = undefined;
  el.hidden = true;
  run(joined.user, joined.room);
});

const user = param("user");
const room = param("room");
if (user && room) run(user, room);
else {
  signin.hidden = false;
  roomInput.value = room ?? "demo";
  nameInput.value = user ?? rememberedUser() ?? "";
  (nameInput.value ? roomInput : nameInput).focus();
  signin.addEventListener("submit", (e) => {
    e.preventDefault();
    const u = nameInput.value.trim();
    const r = roomInput.value.trim();
    if (u && r) run(u, r);
  });
}
