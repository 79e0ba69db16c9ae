// The Call Kit's style sheets (shadow DOM). Everything a page may want to change goes
// through the custom properties --cascade-accent, --cascade-bg, --cascade-fg,
// --cascade-radius and --cascade-font (plus --cascade-danger, --cascade-success,
// --cascade-warning), or through the `part`s named in the markup. Dark by default;
// `theme="light"` or `theme="auto"` (follows prefers-color-scheme) on the element.

/** Theme, buttons, avatars and the bits both components share. */
export const baseCss = `
:host {
  --_accent: var(--cascade-accent, #5b8cff);
  --_bg: var(--cascade-bg, #0d0f14);
  --_fg: var(--cascade-fg, #f4f6fb);
  --_radius: var(--cascade-radius, 18px);
  --_font: var(--cascade-font, system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif);
  --_danger: var(--cascade-danger, #e5484d);
  --_success: var(--cascade-success, #24a865);
  --_warning: var(--cascade-warning, #f5a524);
  --_surface: color-mix(in srgb, var(--_fg) 7%, var(--_bg));
  --_surface-2: color-mix(in srgb, var(--_fg) 13%, var(--_bg));
  --_soft: color-mix(in srgb, var(--_fg) 64%, var(--_bg));
  display: block;
  position: relative;
  box-sizing: border-box;
  height: 100%;
  min-height: 320px;
  overflow: hidden;
  border-radius: var(--_radius);
  background: var(--_bg);
  color: var(--_fg);
  font-family: var(--_font);
  font-size: 16px;
  line-height: 1.4;
  -webkit-tap-highlight-color: transparent;
}
:host([theme="light"]) {
  --_bg: var(--cascade-bg, #f5f6fa);
  --_fg: var(--cascade-fg, #141821);
}
@media (prefers-color-scheme: light) {
  :host([theme="auto"]) {
    --_bg: var(--cascade-bg, #f5f6fa);
    --_fg: var(--cascade-fg, #141821);
  }
}
:host([hidden]) { display: none; }
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
.root { position: absolute; inset: 0; container-type: inline-size; }
h2, p { margin: 0; }
.sr-only {
  position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; border: 0;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap;
}
video { display: block; background: #000; }

.ctl {
  width: 56px; height: 56px; flex: none;
  display: inline-grid; place-items: center;
  border: 0; border-radius: 50%; padding: 0;
  background: color-mix(in srgb, var(--_fg) 16%, transparent);
  color: var(--_fg);
  cursor: pointer;
  transition: background-color .15s ease, color .15s ease, transform .1s ease;
  backdrop-filter: blur(12px);
}
.ctl:hover { background: color-mix(in srgb, var(--_fg) 24%, transparent); }
.ctl:active { transform: scale(.94); }
.ctl:focus-visible, .pill:focus-visible, input:focus-visible {
  outline: 3px solid var(--_accent); outline-offset: 3px;
}
.ctl:disabled { opacity: .45; cursor: default; }
.ctl[aria-pressed="true"] { background: var(--_fg); color: var(--_bg); }
.ctl.danger { background: var(--_danger); color: #fff; }
.ctl.danger:hover { background: color-mix(in srgb, var(--_danger) 85%, #fff); }
.ctl.success { background: var(--_success); color: #fff; }
.ctl.success:hover { background: color-mix(in srgb, var(--_success) 85%, #fff); }
.ctl.big { width: 72px; height: 72px; }
.ctl.big svg { width: 30px; height: 30px; }
.ctl .on-pressed { display: none; }
.ctl[aria-pressed="true"] .on-pressed { display: block; }
.ctl[aria-pressed="true"] .off-pressed { display: none; }

.pill {
  min-height: 48px; padding: 0 24px;
  border: 0; border-radius: 999px;
  background: color-mix(in srgb, var(--_fg) 14%, transparent);
  color: var(--_fg); font: inherit; font-weight: 600; cursor: pointer;
}
.pill:hover { background: color-mix(in srgb, var(--_fg) 22%, transparent); }
.pill.accent { background: var(--_accent); color: #fff; }
.pill.accent:hover { background: color-mix(in srgb, var(--_accent) 85%, #fff); }

.avatar {
  width: 112px; height: 112px; border-radius: 50%;
  display: grid; place-items: center;
  font-size: 42px; font-weight: 600; letter-spacing: .02em;
  color: #fff;
  background: linear-gradient(135deg, var(--_accent), color-mix(in srgb, var(--_accent) 45%, #b45cff));
  box-shadow: 0 10px 40px color-mix(in srgb, var(--_accent) 35%, transparent);
  user-select: none;
}
.avatar svg { width: 44%; height: 44%; }

.controls {
  display: flex; justify-content: center; align-items: center; gap: 14px;
  padding: 12px 16px calc(16px + env(safe-area-inset-bottom, 0px));
}
.controls .bar {
  display: flex; gap: 14px; padding: 10px 14px;
  border-radius: 999px;
  background: color-mix(in srgb, var(--_bg) 55%, transparent);
  backdrop-filter: blur(16px);
}
@container (max-width: 420px) {
  .controls .bar { gap: 10px; padding: 8px 10px; }
  .ctl { width: 52px; height: 52px; }
  .ctl.big { width: 68px; height: 68px; }
}
@media (prefers-reduced-motion: reduce) {
  *, *::before, *::after { animation: none !important; transition: none !important; }
}
`;

/** `<cascade-call>`: dialer, incoming, in-call and ended screens. */
export const callCss = `
.screen { position: absolute; inset: 0; }
.center {
  display: flex; flex-direction: column; align-items: center; justify-content: center;
  gap: 14px; padding: 32px 24px; text-align: center;
}
.peer-name { font-size: clamp(24px, 6cqi, 34px); font-weight: 650; letter-spacing: -.01em; word-break: break-word; }
.sub { color: var(--_soft); font-size: 16px; }

/* idle / dialer */
.idle { background: radial-gradient(120% 80% at 50% 0%, color-mix(in srgb, var(--_accent) 22%, transparent), transparent 60%); }
.idle .title { font-size: 24px; font-weight: 650; }
.dialer { width: min(100%, 420px); display: flex; flex-direction: column; gap: 10px; margin-top: 8px; }
.dialer .field {
  display: flex; align-items: center; gap: 8px;
  padding: 6px 6px 6px 20px; border-radius: 999px;
  background: var(--_surface-2);
  border: 1px solid color-mix(in srgb, var(--_fg) 10%, transparent);
}
.dialer .field:focus-within { border-color: var(--_accent); }
.dialer input {
  flex: 1; min-width: 0; height: 48px; border: 0; background: transparent;
  color: var(--_fg); font: inherit; font-size: 17px;
}
.dialer input::placeholder { color: var(--_soft); }
.dialer input:focus-visible { outline: none; }
.dialer .ctl { width: 48px; height: 48px; }
.error { color: color-mix(in srgb, var(--_danger) 70%, var(--_fg)); font-size: 14px; min-height: 20px; }
.me { color: var(--_soft); font-size: 14px; }

/* incoming */
.incoming { background: radial-gradient(110% 70% at 50% 30%, color-mix(in srgb, var(--_success) 20%, transparent), transparent 65%), var(--_bg); }
.pulse { position: relative; display: grid; place-items: center; width: 200px; height: 200px; }
.pulse .wave {
  position: absolute; inset: 44px; border-radius: 50%;
  border: 2px solid color-mix(in srgb, var(--_success) 70%, transparent);
  animation: wave 2.4s ease-out infinite; opacity: 0;
}
.pulse .wave:nth-child(2) { animation-delay: .8s; }
.pulse .wave:nth-child(3) { animation-delay: 1.6s; }
@keyframes wave { 0% { transform: scale(1); opacity: .9; } 100% { transform: scale(1.8); opacity: 0; } }
.incoming .avatar { animation: nudge 1.2s ease-in-out infinite; }
@keyframes nudge { 0%, 100% { transform: rotate(0); } 10% { transform: rotate(-5deg); } 20% { transform: rotate(5deg); } 30% { transform: rotate(0); } }
.answer { display: flex; gap: clamp(48px, 18cqi, 96px); margin-top: 28px; }
@media (max-height: 480px) {
  .center { gap: 8px; padding: 16px; }
  .pulse { width: 128px; height: 128px; }
  .pulse .wave { inset: 24px; }
  .avatar { width: 80px; height: 80px; font-size: 30px; }
  .answer { margin-top: 8px; }
}
.labeled { display: flex; flex-direction: column; align-items: center; gap: 10px; font-size: 14px; color: var(--_soft); }
/* The accept button glows; it does not move (a moving target is hard to tap, and to click in tests). */
.incoming .ctl.success { animation: glow 1.6s ease-out infinite; }
@keyframes glow {
  0% { box-shadow: 0 0 0 0 color-mix(in srgb, var(--_success) 60%, transparent); }
  100% { box-shadow: 0 0 0 18px transparent; }
}

/* in call */
.stage { position: absolute; inset: 0; background: #000; }
.stage .remote { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: cover; }
.stage[data-remote="none"] .remote { visibility: hidden; }
.placeholder {
  position: absolute; inset: 0; display: flex; flex-direction: column; align-items: center; justify-content: center;
  gap: 16px; text-align: center; padding: 24px;
  background: radial-gradient(100% 70% at 50% 35%, color-mix(in srgb, var(--_accent) 18%, transparent), transparent 70%), color-mix(in srgb, var(--_bg) 72%, transparent);
}
.stage[data-remote="video"] .placeholder { display: none; }
.placeholder .avatar.calling { animation: breathe 2s ease-in-out infinite; }
@keyframes breathe { 0%, 100% { box-shadow: 0 0 0 0 color-mix(in srgb, var(--_accent) 45%, transparent); } 50% { box-shadow: 0 0 0 18px transparent; } }

.local-wrap {
  position: absolute; z-index: 2; top: 76px; right: 16px;
  width: clamp(96px, 22cqi, 240px); aspect-ratio: 4 / 3;
  border-radius: calc(var(--_radius) * .7); overflow: hidden;
  background: var(--_surface-2);
  box-shadow: 0 8px 30px rgba(0, 0, 0, .45); border: 1px solid rgba(255, 255, 255, .12);
  transition: all .3s ease;
}
@container (max-width: 560px) { .local-wrap { aspect-ratio: 3 / 4; width: clamp(92px, 28cqi, 140px); } }
@media (max-height: 480px) { .local-wrap { top: 16px; width: clamp(96px, 17cqi, 150px); } }
.local-wrap .local { width: 100%; height: 100%; object-fit: cover; transform: scaleX(-1); }
.local-wrap.screen-share .local { transform: none; object-fit: contain; }
.local-wrap .cam-off { position: absolute; inset: 0; display: grid; place-items: center; color: var(--_soft); }
.local-wrap:not(.camera-off) .cam-off, .local-wrap.camera-off .local { display: none; }
/* Before the remote side shows up, the local camera fills the screen behind the status. */
.stage[data-remote="none"] ~ .local-wrap:not(.camera-off) {
  top: 0; right: 0; width: 100%; height: 100%; aspect-ratio: auto; border-radius: 0; border: 0; box-shadow: none; z-index: 0;
}
.stage[data-remote="none"] ~ .local-wrap:not(.camera-off) + .veil { display: block; }
.veil { display: none; position: absolute; inset: 0; z-index: 1; background: color-mix(in srgb, var(--_bg) 55%, transparent); backdrop-filter: blur(6px); }

.top {
  position: absolute; z-index: 3; top: 0; left: 0; right: 0;
  display: flex; align-items: center; gap: 12px; padding: 16px 20px 28px;
  background: linear-gradient(to bottom, rgba(0, 0, 0, .55), transparent);
  color: #fff;
}
.top .who { display: flex; flex-direction: column; min-width: 0; }
.top .avatar { display: none; }
/* Until the remote video shows, the header is the centre of the screen: avatar, name, status. */
.stage[data-remote="none"] ~ .top {
  inset: 0; justify-content: center; padding: 24px; background: none; pointer-events: none; text-align: center;
}
.stage[data-remote="none"] ~ .top .who { align-items: center; gap: 10px; }
.stage[data-remote="none"] ~ .top .avatar { display: grid; margin-bottom: 8px; }
.stage[data-remote="none"] ~ .top strong { font-size: clamp(24px, 6cqi, 34px); white-space: normal; overflow-wrap: anywhere; }
.stage[data-remote="none"] ~ .top .line { font-size: 16px; }
.top .who strong { font-size: 17px; font-weight: 650; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.top .line { display: flex; gap: 8px; align-items: center; font-size: 14px; color: rgba(255, 255, 255, .8); font-variant-numeric: tabular-nums; }
.dot { width: 8px; height: 8px; border-radius: 50%; background: var(--_success); }
.call[data-state="reconnecting"] .dot { background: var(--_warning); }
.call[data-state="ringing"] .dot, .call[data-state="connecting"] .dot { background: var(--_soft); }

.banner {
  position: absolute; z-index: 4; top: 72px; left: 50%; transform: translateX(-50%);
  display: flex; align-items: center; gap: 10px; padding: 10px 18px; border-radius: 999px;
  background: var(--_warning); color: #1d1300; font-weight: 600; font-size: 15px;
  box-shadow: 0 8px 24px rgba(0, 0, 0, .35); white-space: nowrap;
}
@container (max-width: 560px) { .banner { left: 16px; transform: none; } }
.spinner { width: 16px; height: 16px; border-radius: 50%; border: 2px solid currentColor; border-right-color: transparent; animation: spin .8s linear infinite; }
@keyframes spin { to { transform: rotate(360deg); } }
.sound {
  position: absolute; z-index: 4; left: 50%; bottom: 112px; transform: translateX(-50%);
  display: flex; align-items: center; gap: 8px;
}
.call .controls { position: absolute; z-index: 3; left: 0; right: 0; bottom: 0; background: linear-gradient(to top, rgba(0, 0, 0, .5), transparent); }

/* ended */
.ended .end-reason { font-size: 18px; color: var(--_fg); }
.ended .avatar { filter: grayscale(.6); opacity: .85; box-shadow: none; }
.ended .actions { display: flex; gap: 12px; margin-top: 16px; flex-wrap: wrap; justify-content: center; }
`;

/** `<cascade-meeting>`: the grid of tiles and its controls. */
export const meetingCss = `
.root { display: flex; flex-direction: column; }
.top { display: flex; align-items: center; gap: 12px; padding: 14px 20px 6px; min-height: 52px; }
.top .room { font-size: 17px; font-weight: 650; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.top .count { display: inline-flex; align-items: center; gap: 6px; margin-left: auto; color: var(--_soft); font-size: 14px; font-variant-numeric: tabular-nums; }
.top .count svg { width: 18px; height: 18px; }
.grid {
  flex: 1; min-height: 0; padding: 8px 16px;
  display: grid; gap: var(--gap, 10px);
  grid-template-columns: repeat(var(--cols, 1), var(--tile-w, 1fr));
  grid-auto-rows: var(--tile-h, auto);
  justify-content: center; align-content: center;
}
.tile {
  position: relative; overflow: hidden; min-width: 0; min-height: 0;
  border-radius: calc(var(--_radius) * .8);
  background: var(--_surface);
  transition: box-shadow .2s ease;
}
/* The highlight is drawn above the video (an outline would be painted under it). */
.tile::after {
  content: ""; position: absolute; inset: 0; z-index: 1; border-radius: inherit; pointer-events: none;
  box-shadow: inset 0 0 0 3px transparent; transition: box-shadow .2s ease;
}
.tile.speaking::after { box-shadow: inset 0 0 0 3px var(--_accent); }
.tile video { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: cover; background: transparent; }
.tile.local video { transform: scaleX(-1); }
.tile .avatar { position: absolute; left: 50%; top: 50%; transform: translate(-50%, -50%); width: clamp(48px, 30%, 112px); height: auto; aspect-ratio: 1; font-size: clamp(18px, 4cqi, 40px); }
.tile:not(.no-video) .avatar { display: none; }
.tile.no-video video { visibility: hidden; }
.tile .name {
  position: absolute; z-index: 2; left: 10px; bottom: 10px; max-width: calc(100% - 20px);
  display: inline-flex; align-items: center; gap: 6px;
  padding: 4px 10px; border-radius: 999px;
  background: rgba(0, 0, 0, .55); color: #fff; font-size: 13px; font-weight: 600;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; backdrop-filter: blur(8px);
}
.tile .name .mic { display: none; width: 14px; height: 14px; color: var(--_danger); }
.tile .name .mic svg { width: 14px; height: 14px; }
.tile.audio-off .name .mic { display: inline-flex; }
.tile.speaking { box-shadow: 0 0 28px color-mix(in srgb, var(--_accent) 50%, transparent); }
.tile.speaking .name { background: var(--_accent); }
.alone { margin: 0; padding: 0 16px 4px; text-align: center; color: var(--_soft); font-size: 14px; }
.left-screen {
  position: absolute; inset: 0; z-index: 5;
  display: flex; flex-direction: column; align-items: center; justify-content: center; gap: 14px;
  background: var(--_bg); text-align: center; padding: 24px;
}
.left-screen .title { font-size: 24px; font-weight: 650; }
.left-screen .sub { color: var(--_soft); }
`;
