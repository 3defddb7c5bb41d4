// The overlay: a canvas laid over the image's (#overlay; the mouse goes through it to the
// image's canvas) for what is drawn over the view without drawing the image again: the brush's
// circle, the hover preview, the polygons. Each module adds a layer, a function drawing on the
// overlay's context in canvas pixels, and asks for a redraw when what it draws changes. The
// view (view.js) changes by itself too (zoom, pan, a resized window): the overlay compares
// its V and the canvas's box at each animation frame, and follows them.
import { V } from "./view.js";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const overlay = $("overlay");
const ctx = overlay.getContext("2d");
const layers = [];
let drawn = "";  // the view the overlay was drawn for
let dirty = true;

export const addLayer = (draw) => layers.push(draw);
export const redraw = () => { dirty = true; };

export { imagePoint } from "./view.js";  // the image point under a mouse event

// Draw in image pixels from here on (a layer's context is restored after it).
export function inImagePixels(context) {
  context.setTransform(V.scale, 0, 0, V.scale, -V.x * V.scale, -V.y * V.scale);
  context.imageSmoothingEnabled = V.scale < 1;
}

function frame() {
  const view = [V.x, V.y, V.scale, canvas.width, canvas.height, canvas.offsetLeft, canvas.offsetTop].join();
  if (dirty || view !== drawn) {
    if (overlay.width !== canvas.width || overlay.height !== canvas.height) {
      [overlay.width, overlay.height] = [canvas.width, canvas.height];
    }
    overlay.style.left = `${canvas.offsetLeft}px`;
    overlay.style.top = `${canvas.offsetTop}px`;
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    for (const layer of layers) {
      ctx.save();
      layer(ctx);
      ctx.restore();
    }
    [drawn, dirty] = [view, false];
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
