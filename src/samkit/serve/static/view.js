// The canvas: which part of the image it shows (zoom and pan), how masks are drawn on it
// (opacity, or outlines only), and the mouse on it (a click is a point, a drag a box).
// The canvas keeps the size that fits the whole image in the stage, and zooming magnifies
// inside it. `V.scale` is canvas pixels per image pixel and (V.x, V.y) the image point at the
// canvas's top-left corner:  canvas (cx, cy) = ((x - V.x) * V.scale, (y - V.y) * V.scale).
// Prompts are image pixels (X, Y) whatever the zoom; only what is drawn follows V.
import { outlineCanvas } from "./masks.js";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const MAX_SCALE = 32;  // canvas pixels per image pixel at most: each pixel a plain square
const STEP = 1.5;  // the zoom buttons' and keys' factor
const WHEEL = 0.002;  // zoom by exp(-WHEEL * deltaY): a notch of 100 px is about x1.2

// fit: the scale that shows the whole image; opacity: of the masks' fill, 0..1; outline:
// draw each mask's boundary only; space: the space bar is held (a left drag pans).
export const V = { fit: 1, scale: 1, x: 0, y: 0, opacity: 0.5, outline: false, space: false };
let S = null;  // the app's state: image, masks, prompt (initView)
let hooks = null;  // point([x, y], label) and box([x0, y0, x1, y1]): the mouse's prompts
let drag = null;  // a press on the canvas: a click, a box being drawn, or a pan

const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);

// Image (X, Y) -> canvas pixels, and canvas pixels -> image.
export const toCanvas = ([x, y]) => [(x - V.x) * V.scale, (y - V.y) * V.scale];
const imageAt = (cx, cy) => [V.x + cx / V.scale, V.y + cy / V.scale];

// The canvas pixel under a mouse event.
function canvasAt(e) {
  const r = canvas.getBoundingClientRect();
  return [((e.clientX - r.left) / r.width) * canvas.width, ((e.clientY - r.top) / r.height) * canvas.height];
}

// The image point under a mouse event (outside the image too; the overlay's tools use it).
export const imagePoint = (e) => imageAt(...canvasAt(e));

// The image point under a mouse event, clamped to the image.
function toImage(e) {
  const [x, y] = imagePoint(e);
  return [clamp(x, 0, S.image.width), clamp(y, 0, S.image.height)];
}

// Keep the scale between the fit and MAX_SCALE and the canvas over the image.
function clampView() {
  V.scale = clamp(V.scale, V.fit, Math.max(V.fit, MAX_SCALE));
  V.x = clamp(V.x, 0, Math.max(0, S.image.width - canvas.width / V.scale));
  V.y = clamp(V.y, 0, Math.max(0, S.image.height - canvas.height / V.scale));
  $("zoom").textContent = `${Math.round(V.scale * 100)}%`;
}

// Size the canvas to fit the image in the stage. `whole`: show the whole image (a new image,
// the fit key); else keep the zoom and the image point at the centre (a resized window).
export function fitView(whole = true) {
  if (!S.image) return;
  const { width, height } = S.image, stage = $("stage");
  const zoom = V.scale / V.fit, centre = imageAt(canvas.width / 2, canvas.height / 2);
  V.fit = Math.max(1e-3, Math.min((stage.clientWidth - 20) / width, (stage.clientHeight - 20) / height));
  canvas.width = Math.max(1, Math.round(width * V.fit));
  canvas.height = Math.max(1, Math.round(height * V.fit));
  V.scale = whole ? V.fit : V.fit * zoom;
  [V.x, V.y] = whole ? [0, 0] : [centre[0] - canvas.width / 2 / V.scale, centre[1] - canvas.height / 2 / V.scale];
  clampView();
  draw();
}

// Zoom by `factor`, keeping the image point under canvas pixel (cx, cy) where it is.
function zoomAt(factor, cx = canvas.width / 2, cy = canvas.height / 2) {
  if (!S.image) return;
  const [x, y] = imageAt(cx, cy);
  V.scale = clamp(V.scale * factor, V.fit, Math.max(V.fit, MAX_SCALE));
  [V.x, V.y] = [x - cx / V.scale, y - cy / V.scale];
  clampView();
  draw();
}

function setOpacity(value) {
  V.opacity = Math.round(clamp(value, 0, 1) * 100) / 100;
  $("opacity").value = String(Math.round(V.opacity * 100));
  draw();
}

function toggleOutline() {
  V.outline = !V.outline;
  $("outline").setAttribute("aria-pressed", String(V.outline));
  draw();
}

// The space bar held down (or let go): a left drag pans instead of drawing a box.
function holdSpace(down) {
  V.space = down;
  showCursor();
}

function showCursor() {
  canvas.style.cursor = drag?.pan ? "grabbing" : V.space ? "grab" : "crosshair";
}

// What the keys do to the view (keys.js binds them).
export const viewKeys = {
  zoomIn: () => zoomAt(STEP), zoomOut: () => zoomAt(1 / STEP), fit: () => fitView(),
  opacityDown: () => setOpacity(V.opacity - 0.1), opacityUp: () => setOpacity(V.opacity + 0.1),
  outline: toggleOutline, space: holdSpace,
};

// -- drawing -----------------------------------------------------------------------------
export function clearCanvas() {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
}

// The outline of a mask canvas, made once per mask and band width. The band is one image
// pixel, or more for an image shrunk to fit, so that it stays at least a canvas pixel wide.
const outlines = new WeakMap();
function outlineOf(mask) {
  const band = Math.max(1, Math.ceil(1 / V.fit - 1e-6));
  let outline = outlines.get(mask);
  if (outline?.band !== band) {
    outline = outlineCanvas(mask, band);
    outlines.set(mask, outline);
  }
  return outline;
}

// A mask over the image: its fill at the opacity chosen, or its outline opaque; `alpha`
// dims it further (the proposals not hovered).
function paint(mask, alpha) {
  ctx.globalAlpha = V.outline ? alpha : alpha * V.opacity;
  ctx.drawImage(V.outline ? outlineOf(mask) : mask, 0, 0, S.image.width, S.image.height);
}

// The canvas only (hovering a proposal redraws this without rebuilding the lists under the mouse).
export function draw() {
  if (!S?.image) return;
  clearCanvas();
  ctx.setTransform(V.scale, 0, 0, V.scale, -V.x * V.scale, -V.y * V.scale);
  ctx.imageSmoothingEnabled = V.scale < 1;  // shrunk: smoothed; enlarged: its own pixels
  ctx.drawImage(S.image, 0, 0, S.image.width, S.image.height);
  ctx.imageSmoothingEnabled = false;
  if (!S.hideAll) {
    for (const obj of S.objects) if (!S.hidden.has(obj.id)) paint(S.objectMasks.get(obj.id), 1);
  }
  S.proposalMasks.forEach((m, i) => paint(m, S.focus < 0 || S.focus === i ? 1 : 0.25));
  if (S.masks.length) paint(S.masks[S.selected], 1);
  ctx.globalAlpha = 1;
  ctx.imageSmoothingEnabled = true;
  ctx.setTransform(1, 0, 0, 1, 0, 0);  // the prompts' marks keep their size at any zoom
  const box = drag?.box ?? S.prompt.box;
  if (box) {
    const [x0, y0] = toCanvas(box.slice(0, 2)), [x1, y1] = toCanvas(box.slice(2));
    ctx.strokeStyle = "#1e90ff"; ctx.lineWidth = 2;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
  S.prompt.points.forEach((point, i) => {
    const [x, y] = toCanvas(point);
    ctx.beginPath();
    ctx.arc(x, y, 5, 0, 2 * Math.PI);
    ctx.fillStyle = S.prompt.labels[i] === 1 ? "#2ecc40" : "#ff4136";
    ctx.fill(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.5; ctx.stroke();
  });
}

// -- the mouse ---------------------------------------------------------------------------
// A left click adds a positive point, a right click or Alt+click a negative one, a left drag
// a box; the middle button, or the left with the space bar held, pans; the wheel zooms
// around the cursor.
export function initView(state, prompts) {
  S = state;
  hooks = prompts;
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("mousedown", (e) => {
    if (!S.image) return;
    const pan = e.button === 1 || (e.button === 0 && V.space);
    if (pan) e.preventDefault();  // no autoscroll
    drag = { pan, start: toImage(e), x: e.clientX, y: e.clientY, moved: false, button: e.button, alt: e.altKey };
    showCursor();
  });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    if (drag.pan) {
      const r = canvas.getBoundingClientRect();
      V.x -= ((e.clientX - drag.x) * canvas.width) / r.width / V.scale;
      V.y -= ((e.clientY - drag.y) * canvas.height) / r.height / V.scale;
      [drag.x, drag.y] = [e.clientX, e.clientY];
      clampView();
      draw();
      return;
    }
    if (Math.hypot(e.clientX - drag.x, e.clientY - drag.y) > 5) drag.moved = true;
    if (drag.moved && drag.button === 0) {
      const [x0, y0] = drag.start, [x1, y1] = toImage(e);
      drag.box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
      draw();
    }
  });
  window.addEventListener("mouseup", () => {
    const done = drag;
    drag = null;
    showCursor();
    if (!done || done.pan) return;
    if (done.box) hooks.box(done.box);
    else if (!done.moved) hooks.point(done.start, done.button === 2 || done.alt ? 0 : 1);
  });
  canvas.addEventListener("wheel", (e) => {
    if (!S.image) return;
    e.preventDefault();  // the page does not scroll under the image
    const unit = [1, 16, canvas.height][e.deltaMode] ?? 1;  // pixels, lines, pages
    zoomAt(Math.exp(-WHEEL * unit * e.deltaY), ...canvasAt(e));
  }, { passive: false });
  $("opacity").addEventListener("input", (e) => setOpacity(Number(e.target.value) / 100));
  new ResizeObserver(() => fitView(false)).observe($("stage"));  // the window, a longer status
}
