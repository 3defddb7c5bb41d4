// Progress over the folder: each image is new, in progress (it has an object), done or
// skipped (D and S mark it, again unmark it; PUT /api/images/{id}/state). The image list
// shows the states with their counts, and is filtered by state and by a search of file
// names here in the page (N and P still step through every image). The image open last is
// kept in localStorage: opening the page again (without a #image in the address) resumes
// there. Objects per label over the folder come from GET /api/progress.
import { api } from "./api.js";
import { renderLabels } from "./labels.js";

const $ = (id) => document.getElementById(id);
const STATES = ["new", "in progress", "done", "skipped"];
const LAST = "samkit.last";
let rerender = () => {};

// An image's state as the page knows it (its object count may be newer than the server's).
export function stateOf(im) {
  if (im.state === "done" || im.state === "skipped") return im.state;
  return im.annotations ? "in progress" : "new";
}

// Whether the image list shows `im` under the filter and the search.
export function shown(im) {
  const state = $("state-filter").value, query = $("image-search").value.trim().toLowerCase();
  return (!state || stateOf(im) === state) && im.file_name.toLowerCase().includes(query);
}

export function renderProgress(images) {
  const n = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const im of images) n[stateOf(im)]++;
  $("progress-counts").textContent = `${n.done} done, ${n.skipped} skipped, ${n["in progress"]} in progress, ${n.new} new of ${images.length}`;
}

// Mark the image `S.images[S.index]` (or take the mark off when it has it already).
export async function mark(S, state) {
  const im = S.images[S.index];
  if (!im) return;
  const entry = await api.mark(im.id, stateOf(im) === state ? "new" : state);
  Object.assign(im, { state: entry.state });
  $("status").textContent = `${im.file_name}: ${stateOf(im)}`;
  rerender();
}

export const remember = (imageId) => localStorage.setItem(LAST, imageId);
export const lastImage = () => localStorage.getItem(LAST) ?? "";

// Objects per label over the folder, into the label panel.
export async function refreshCounts() {
  renderLabels((await api.progress()).labels);
}

export function initProgress(render) {
  rerender = render;
  $("state-filter").onchange = render;
  $("image-search").oninput = render;
}
