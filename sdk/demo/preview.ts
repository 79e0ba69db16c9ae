// A page that shows the Call Kit's screens with fake calls and meetings (no server), for
// looking at the components and taking screenshots: preview.html?screen=NAME with NAME
// one of idle, incoming, outgoing, call, reconnecting, ended, meeting (people=N remote
// participants), and theme=light|auto to try the other themes.

import { defineCallKit } from "@cascade/callkit";
import { FakeAgent, FakeCall, FakeMeeting } from "../packages/callkit/test/fakes.js";

defineCallKit();

const HUES = [210, 160, 20, 280, 340, 50];

/** An animated stand-in for someone's camera: a soft gradient, a head-and-shoulders shape. */
function person(name: string, hue: number): MediaStream {
  const canvas = document.createElement("canvas");
  canvas.width = 640;
  canvas.height = 480;
  const g = canvas.getContext("2d");
  if (!g) throw new Error("no 2d context");
  const draw = (t: number): void => {
    const bg = g.createLinearGradient(0, 0, 640, 480);
    bg.addColorStop(0, `hsl(${hue} 45% 32%)`);
    bg.addColorStop(1, `hsl(${(hue + 40) % 360} 40% 14%)`);
    g.fillStyle = bg;
    g.fillRect(0, 0, 640, 480);
    const sway = Math.sin(t / 900) * 8;
    g.fillStyle = `hsl(${hue} 25% 78%)`;
    g.beginPath();
    g.arc(320 + sway, 200, 80, 0, Math.PI * 2);
    g.fill();
    g.beginPath();
    g.ellipse(320 + sway, 470, 170, 150, 0, Math.PI, 0);
    g.fill();
    g.fillStyle = "rgba(255,255,255,.55)";
    g.font = "600 22px system-ui, sans-serif";
    g.fillText(name, 20, 36);
    requestAnimationFrame(draw);
  };
  requestAnimationFrame(draw);
  return canvas.captureStream(15);
}

async function camera(): Promise<MediaStream> {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: false, video: { width: 640, height: 480 } });
  } catch {
    return person("You", 200);
  }
}

const screen = new URLSearchParams(location.search).get("screen") ?? "call";
const theme = new URLSearchParams(location.search).get("theme");

async function main(): Promise<void> {
  if (screen === "meeting") {
    const meeting = new FakeMeeting();
    Object.assign(meeting, { localStream: await camera() });
    const names = ["Bob Marley", "carol", "Dmitri Ivanov", "eve", "frank"];
    const count = Number(new URLSearchParams(location.search).get("people") ?? "3");
    names.slice(0, count).forEach((n, i) => {
      meeting.participants.set(`r${i}`, { user: n, stream: person(n, HUES[i % HUES.length] ?? 0) });
    });
    const el = document.createElement("cascade-meeting");
    el.setAttribute("user", "alice");
    el.setAttribute("room", "Weekly sync");
    if (theme) el.setAttribute("theme", theme);
    document.body.append(el);
    el.meeting = meeting.asMeeting();
    meeting.speak("r1");
    return;
  }
  const agent = new FakeAgent();
  const el = document.createElement("cascade-call");
  el.setAttribute("dialer", "");
  el.setAttribute("user", "alice");
  if (theme) el.setAttribute("theme", theme);
  if (new URLSearchParams(location.search).has("ring")) el.setAttribute("ring-sound", "");
  document.body.append(el);
  el.agent = agent.asAgent();
  if (screen === "idle") return;
  if (screen === "outgoing") {
    const call = new FakeCall("Bob Marley", "outgoing");
    call.localStream = await camera();
    el.call = call.asCall();
    return;
  }
  const call = agent.ring("Bob Marley");
  if (screen === "incoming") return;
  call.localStream = await camera();
  call.remoteStream = person("Bob Marley", 210);
  call.setState("active", { startedAt: Date.now() - 83_000 });
  if (screen === "reconnecting") call.setState("reconnecting");
  if (screen === "ended") call.setState("ended", { endReason: "remote_hangup" });
}

void main().then(() => {
  document.body.dataset.ready = "true";
});
