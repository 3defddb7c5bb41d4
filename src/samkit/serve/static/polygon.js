// Polygon view (V): the selected object's outline as polygons with their vertices, as the
// server traces them (GET /api/images/{id}/annotations/{n}/polygons: one polygon per part of
// the mask, each with its holes). Exteriors are drawn solid, holes dashed; each vertex is a
// small square. Read only: the polygons show the mask's shape (edit it with the brush and
// the eraser); they are traced again whenever the object's mask changes.
import { api } from "./api.js";
import { addLayer, redraw } from "./overlay.js";
import { toCanvas } from "./view.js";

const $ = (id) => document.getElementById(id);
// on: the view is on; key: the object (image, id and mask) the polygons are, or are asked, for.
export const P = { on: false, key: "", polygons: [] };
let S = null;

function say(text) {
  $("status").textContent = text;
}

// Ask for the selected object's polygons if they are not the ones shown (or asked for).
export function renderPolygons() {
  const obj = P.on && S.info ? S.objects.find((o) => o.id === S.editing) : null;
  const key = obj ? `${S.info.id}/${obj.id}/${JSON.stringify(obj.segmentation.counts)}` : "";
  if (key === P.key) return;
  P.key = key;
  P.polygons = [];
  redraw();
  if (!obj) return;
  api.polygons(S.info.id, obj.id).then((data) => {
    if (P.key !== key) return;  // another object, or another mask, since
    P.polygons = data.polygons;
    const holes = data.polygons.reduce((n, p) => n + p.holes.length, 0);
    const vertices = data.polygons.reduce((n, p) => n + [p.exterior, ...p.holes].reduce((m, r) => m + r.length, 0), 0);
    say(`#${obj.id}: ${data.polygons.length} polygon(s), ${holes} hole(s), ${vertices} vertices (read only)`);
    redraw();
  }).catch((err) => { if (P.key === key) say(err.message); });
}

export function togglePolygons() {
  P.on = !P.on;
  $("polygons").setAttribute("aria-pressed", String(P.on));
  renderPolygons();
  if (P.on && !S.objects.some((o) => o.id === S.editing)) say("polygon view: select an object (Shift+click on it, or its row)");
}

function ring(ctx, points, hole) {
  const corners = points.map(([x, y]) => toCanvas([x + 0.5, y + 0.5]));  // pixel centres
  ctx.beginPath();
  corners.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
  ctx.closePath();
  ctx.setLineDash(hole ? [5, 4] : []);
  ctx.lineWidth = 2;
  ctx.strokeStyle = hole ? "#ff851b" : "#ffdc00";
  ctx.stroke();
  ctx.setLineDash([]);
  for (const [x, y] of corners) {
    ctx.fillStyle = hole ? "#ff851b" : "#fff";
    ctx.fillRect(x - 3, y - 3, 6, 6);
    ctx.strokeStyle = "#111";
    ctx.lineWidth = 1;
    ctx.strokeRect(x - 3, y - 3, 6, 6);
  }
}

export function initPolygons(state) {
  S = state;
  addLayer((ctx) => {
    if (!P.on || !S.image) return;
    for (const p of P.polygons) {
      ring(ctx, p.exterior, false);
      for (const hole of p.holes) ring(ctx, hole, true);
    }
  });
}
