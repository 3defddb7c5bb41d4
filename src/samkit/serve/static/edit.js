// Brush and eraser (B, X): with one on, a left drag paints or erases the candidate mask, or the
// accepted object selected (Shift+click on it, or a click on its row; Shift+click elsewhere,
// or Esc, unselects). The brush with neither paints a new candidate. Strokes are painted at
// the image's resolution on a copy of the mask's canvas, pixel by pixel: a pixel is painted
// when its centre is within the radius (image pixels, `,` and `.`) of the mouse's path, so the
// canvas shown is the mask saved, at any zoom. When the button is let go, an object's new mask
// is saved (PATCH, its source becomes "edited"); the candidate's is the candidate now, marked
// edited: the next click sends it as the mask prompt (app.js), and accept saves it. Both go
// into the undo history (history.js).
// The mouse is view.js's; this module hears a press first (on the canvas's capture phase) and
// keeps a stroke or a Shift+click from becoming a point or a box. Space+drag and the middle
// button still pan, and the wheel zooms.
import { patchStep, promptStep, record } from "./history.js";
import { canvasRle } from "./masks.js";
import { addLayer, imagePoint, inImagePixels, redraw } from "./overlay.js";
import { V, draw } from "./view.js";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const MAX_RADIUS = 100;
export const E = { tool: null, radius: 8 };  // tool: "brush", "eraser" or null
let S = null;
let hooks = null;  // the app's: snapshot(), change(step): perform it, render(), say(text), colour
let stroke = null;  // the drag being painted
let cursor = null;  // the image point under the mouse, for the brush's circle

export function setTool(tool) {
  E.tool = E.tool === tool ? null : tool;
  for (const name of ["brush", "eraser"]) $(name).setAttribute("aria-pressed", String(E.tool === name));
  hooks.say(E.tool ? `${E.tool}: drag on the image (radius ${E.radius} px; , and . change it)` : "brush and eraser off");
  redraw();
}

function setRadius(radius) {
  E.radius = Math.min(Math.max(Math.round(radius), 1), MAX_RADIUS);
  $("brush-size").value = String(E.radius);
  $("brush-size-value").textContent = `${E.radius} px`;
  redraw();
}

export const editKeys = {
  brush: () => setTool("brush"), eraser: () => setTool("eraser"),
  brushSmaller: () => setRadius(Math.min(E.radius - 1, E.radius / 1.25)),
  brushLarger: () => setRadius(Math.max(E.radius + 1, E.radius * 1.25)),
};

// The topmost accepted object shown at image point (x, y), or null.
function objectAt([x, y]) {
  if (S.hideAll) return null;
  for (const obj of [...S.objects].reverse()) {
    const mask = S.objectMasks.get(obj.id);
    if (S.hidden.has(obj.id) || !mask || x < 0 || y < 0 || x >= mask.width || y >= mask.height) continue;
    if (mask.getContext("2d").getImageData(Math.floor(x), Math.floor(y), 1, 1).data[3]) return obj.id;
  }
  return null;
}

// What a stroke paints: the selected object, else the candidate, else (brush) a new one.
function target() {
  const obj = S.objects.find((o) => o.id === S.editing);
  if (obj && S.objectMasks.has(obj.id)) {
    const mask = S.objectMasks.get(obj.id);
    return { obj, mask, rgba: mask.rgba, show: (c) => S.objectMasks.set(obj.id, Object.assign(c, { rgba: mask.rgba })) };
  }
  const show = (c) => { S.masks = S.masks.length ? S.masks.map((m, i) => (i === S.selected ? c : m)) : [c]; };
  if (S.masks.length) return { mask: S.masks[S.selected], rgba: hooks.colour, show };
  if (E.tool !== "brush") return null;
  const blank = document.createElement("canvas");
  [blank.width, blank.height] = [S.image.width, S.image.height];
  return { mask: blank, rgba: hooks.colour, show: (c) => { S.selected = 0; show(c); } };
}

function start(e) {
  const t = target();
  if (!t) { hooks.say("nothing to erase: click for a mask, or Shift+click an object"); return; }
  const before = t.obj ?? hooks.snapshot();
  const work = document.createElement("canvas");
  [work.width, work.height] = [t.mask.width, t.mask.height];
  const ctx = work.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(t.mask, 0, 0);
  const img = ctx.getImageData(0, 0, work.width, work.height);
  const value = E.tool === "brush" ? new Uint32Array(new Uint8ClampedArray(t.rgba).buffer)[0] : 0;
  stroke = { t, before, work, ctx, img, px: new Uint32Array(img.data.buffer), value, last: imagePoint(e) };
  t.show(work);
  paint(stroke.last);
}

// Paint the capsule from the stroke's last point to `to`: the pixels whose centres are within
// the radius of the segment.
function paint(to) {
  const { img, px, value, last: from } = stroke, r = E.radius, w = img.width, h = img.height;
  const x0 = Math.max(0, Math.floor(Math.min(from[0], to[0]) - r)), x1 = Math.min(w, Math.ceil(Math.max(from[0], to[0]) + r));
  const y0 = Math.max(0, Math.floor(Math.min(from[1], to[1]) - r)), y1 = Math.min(h, Math.ceil(Math.max(from[1], to[1]) + r));
  const [dx, dy] = [to[0] - from[0], to[1] - from[1]], len2 = dx * dx + dy * dy;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const [px0, py0] = [x + 0.5 - from[0], y + 0.5 - from[1]];
      const t = len2 ? Math.min(1, Math.max(0, (px0 * dx + py0 * dy) / len2)) : 0;
      const [ex, ey] = [px0 - t * dx, py0 - t * dy];
      if (ex * ex + ey * ey <= r * r) px[y * w + x] = value;
    }
  }
  if (x1 > x0 && y1 > y0) stroke.ctx.putImageData(img, 0, 0, x0, y0, x1 - x0, y1 - y0);
  stroke.last = to;
  draw();
}

function finish() {
  const done = stroke;
  stroke = null;
  // A canvas of its own for what is kept (view.js keeps each canvas's outline once made).
  const mask = document.createElement("canvas");
  [mask.width, mask.height] = [done.work.width, done.work.height];
  mask.getContext("2d").drawImage(done.work, 0, 0);
  done.t.show(mask);
  const { rle, area } = canvasRle(mask);
  mask.area = area;
  const obj = done.t.obj;
  if (obj) {
    const was = { segmentation: obj.segmentation, ...(obj.source ? { source: obj.source } : {}) };
    hooks.change(patchStep(S.info.id, obj.id, was, { segmentation: rle }));
    return;
  }
  const edited = { segmentation: rle, area, edited: true };
  const blank = { token: null, best: 0, model_ms: 0, imageId: S.info.id, masks: [{ ...edited, predicted_iou: 0, stability_score: 0 }] };
  S.result = S.result ? { ...S.result, masks: S.result.masks.map((m, i) => (i === S.selected ? { ...m, ...edited } : m)) } : blank;
  S.seq++;  // a prediction in flight was asked for the mask before the stroke
  record(promptStep(done.before));
  hooks.render();
}

// Select accepted object `id` for the brush, the eraser and the polygons (again, or null:
// unselect).
function select(id) {
  S.editing = id === S.editing ? null : id;
  hooks.say(S.editing === null ? "no object selected"
    : `object #${S.editing} selected: B paints it, X erases, V shows its polygons (Esc: unselect)`);
  hooks.render();
}

export function initEdit(state, appHooks) {
  S = state;
  hooks = appHooks;
  canvas.addEventListener("mousedown", (e) => {
    if (!S.image || e.button !== 0 || V.space) return;
    if (!e.shiftKey && !E.tool) return;  // a point or a box (view.js)
    e.stopImmediatePropagation();
    e.preventDefault();
    if (e.shiftKey) select(objectAt(imagePoint(e)));
    else start(e);
  }, { capture: true });
  window.addEventListener("mousemove", (e) => {
    if (stroke) paint(imagePoint(e));
    if (E.tool) { cursor = e.target === canvas ? imagePoint(e) : null; redraw(); }
  });
  window.addEventListener("mouseup", (e) => { if (stroke && e.button === 0) finish(); });
  $("objects").addEventListener("click", (e) => {  // a row of the list (its buttons stop theirs)
    const row = e.target.closest("li");
    const i = [...$("objects").children].indexOf(row);
    if (i >= 0 && S.objects[i]) select(S.objects[i].id);
  });
  $("brush-size").addEventListener("input", (e) => setRadius(Number(e.target.value)));
  setRadius(E.radius);
  addLayer((ctx) => {  // the brush's circle under the mouse
    if (!E.tool || !cursor || !S.image) return;
    inImagePixels(ctx);
    ctx.beginPath();
    ctx.arc(cursor[0], cursor[1], E.radius, 0, 2 * Math.PI);
    ctx.lineWidth = 1.5 / V.scale;
    ctx.strokeStyle = E.tool === "brush" ? "#fff" : "#ff4136";
    ctx.stroke();
  });
}

// The rows of the objects list (panels.js makes one per object, in order) mark the one selected.
export function markSelected() {
  [...$("objects").children].forEach((li, i) => li.classList.toggle("editing", S.objects[i]?.id === S.editing));
}
