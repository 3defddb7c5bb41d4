// Hover preview (M): with it on, the mask a click would give under the mouse is predicted and
// drawn faintly, without a click. At most one request is in flight, and requests start at
// least MIN_MS apart; the mouse's newest point is the one asked for next. An answer is drawn
// only if it is for the image open (S.view, as a click's answer) and for the newest request
// (`H.seq`, the hover's own count: a hover never changes S.seq, so it never stops a click's
// answer, and never becomes the candidate). Leaving the image, clicking, opening another
// image or turning it off takes the preview away and makes the answers in flight stale.
import { api } from "./api.js";
import { maskCanvas, outlineCanvas } from "./masks.js";
import { addLayer, imagePoint, inImagePixels, redraw } from "./overlay.js";
import { V } from "./view.js";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const MIN_MS = 150;
const COLOUR = [255, 220, 0, 255];
const ALPHA = 0.35;  // the fill drawn this faint, whatever the masks' opacity; its outline stronger
// mask: the preview drawn (and its outline); point: where it was asked for; want: the point to
// ask for next; dropped: stale answers left out.
export const H = { on: false, mask: null, outline: null, point: null, seq: 0, busy: false, want: null, last: 0, timer: 0, dropped: 0 };
let S = null;
let paused = () => false;  // the brush or eraser is on: the mouse paints

function ask() {
  H.timer = 0;
  if (!H.want || !S.info) return;
  const seq = H.seq, view = S.view, point = H.want;
  H.want = null;
  H.busy = true;
  H.last = performance.now();
  api.predict(S.info.id, { points: [point], labels: [1] }).then((out) => {
    if (seq !== H.seq || view !== S.view || !H.on) { H.dropped++; return; }
    H.mask = maskCanvas(out.masks[out.best].segmentation, COLOUR);
    H.outline = outlineCanvas(H.mask, Math.max(1, Math.ceil(1 / V.fit - 1e-6)));  // a screen pixel wide at least
    H.point = point;
    redraw();
  }, () => {}).finally(() => {  // an error: no preview there (a click would say why)
    H.busy = false;
    schedule();
  });
}

function schedule() {
  if (!H.want || H.busy || H.timer) return;
  H.timer = setTimeout(ask, Math.max(0, H.last + MIN_MS - performance.now()));
}

// Take the preview away; the answers in flight are stale.
export function dropHover() {
  H.seq++;
  H.want = null;
  clearTimeout(H.timer);
  H.timer = 0;
  if (H.mask) { Object.assign(H, { mask: null, outline: null, point: null }); redraw(); }
}

export function toggleHover() {
  H.on = !H.on;
  $("hover").setAttribute("aria-pressed", String(H.on));
  dropHover();
  $("status").textContent = H.on ? "hover preview on: the mask under the mouse is drawn faintly" : "hover preview off";
}

export function initHover(state, isPaused) {
  S = state;
  paused = isPaused;
  canvas.addEventListener("mousemove", (e) => {
    if (!H.on || !S.image || e.buttons || paused()) return;
    H.seq++;  // a newer point: an answer for an older one is stale
    H.want = imagePoint(e);
    schedule();
  });
  canvas.addEventListener("mouseleave", dropHover);
  canvas.addEventListener("mousedown", dropHover);
  addLayer((ctx) => {
    if (!H.mask || !S.image) return;
    inImagePixels(ctx);
    ctx.globalAlpha = ALPHA;
    ctx.drawImage(H.mask, 0, 0, S.image.width, S.image.height);
    ctx.globalAlpha = 0.8;
    ctx.drawImage(H.outline, 0, 0, S.image.width, S.image.height);
  });
}
