// The annotator: one image at a time, prompts -> masks from the API, accepted objects saved.
// State lives in `S`; every change calls render(). Tests read window.samkit and
// document.body.dataset.state ("loading", "embedding", "ready", "predicting", "error").
// Answers come back late and out of order, so each is applied only to what it was asked
// for: `S.view` counts opened images (an answer for another image is dropped), `S.seq`
// counts prompt changes (an answer for an older prompt is dropped).
// What is drawn, and the mouse on the canvas, are view.js's; the keys are keys.js's; the
// brush and eraser edit.js's, undo and redo history.js's, the hover preview hover.js's and
// the polygon view polygon.js's (the last two drawn on overlay.js's canvas).
import { api, inFlight } from "./api.js";
import { E, editKeys, initEdit, markSelected } from "./edit.js";
import { acceptStep, clearHistory, deleteStep, discardStep, forget, initHistory, patchStep, perform, promptStep, proposalsStep, record, redo, undo } from "./history.js";
import { H, dropHover, initHover, toggleHover } from "./hover.js";
import { initKeys } from "./keys.js";
import { chooseLabel, initLabels, objectColor } from "./labels.js";
import { color, maskCanvas } from "./masks.js";
import { renderPanels } from "./panels.js";
import { P, initPolygons, renderPolygons, togglePolygons } from "./polygon.js";
import { cancelEverything, proposalItems, putProposals, renderSources, runEverything, sourceCounts, takeProposals } from "./prefill.js";
import { initProgress, lastImage, mark, refreshCounts, remember } from "./progress.js";
import { focusTextBox, initTextBox, renderTextBox } from "./text.js";
import { V, clearCanvas, draw, fitView, initView, toCanvas, viewKeys } from "./view.js";

const $ = (id) => document.getElementById(id);
const CURRENT = [30, 144, 255, 255];

const emptyPrompt = () => ({ points: [], labels: [], box: null, text: null });
const S = {
  images: [], index: -1, info: null, image: null,
  prompt: emptyPrompt(),
  result: null, selected: 0, masks: [],  // masks: offscreen canvases of result's candidates
  history: [], future: [],  // undo's steps (history.js)
  objects: [], objectMasks: new Map(), hidden: new Set(), hideAll: false,
  editing: null,  // the id of the accepted object selected (brush, eraser, polygons)
  proposals: [], proposalMasks: [], focus: -1,
  seq: 0, view: 0,
};

function setState(state, text) {
  document.body.dataset.state = state;
  $("status").textContent = text ?? state;
}

function fail(err) {
  setState("error", err.message);
}

// The error handler of work started on the image open now (read before the work changes
// it): an error of an image left since is not shown over another.
function failOn(view) {
  return (err) => { if (view === S.view) fail(err); };
}

// -- images ------------------------------------------------------------------------------
// The objects hidden on each image outlive a reload of the tab (sessionStorage).
function hiddenOf(imageId) {
  try {
    return new Set(JSON.parse(sessionStorage.getItem(`samkit.hidden.${imageId}`) ?? "[]"));
  } catch { return new Set(); }
}

function toggleHidden(id) {
  S.hidden.has(id) ? S.hidden.delete(id) : S.hidden.add(id);
  sessionStorage.setItem(`samkit.hidden.${S.info.id}`, JSON.stringify([...S.hidden]));
  render();
}

async function loadImages(openId) {
  S.images = await api.images();
  const i = S.images.findIndex((im) => im.id === openId);
  if (S.images.length) await openImage(i >= 0 ? i : Math.max(S.index, 0));
  else { setState("ready", "no images: upload some"); renderPanels(S, actions); }
}

async function openImage(index) {
  if (index < 0 || index >= S.images.length) return;
  const view = ++S.view;
  S.seq++;  // a prediction still in flight was for the image left
  S.index = index;
  S.info = S.images[index];
  Object.assign(S, { image: null, result: null, masks: [], proposals: [], editing: null });
  clearHistory();
  dropHover();
  S.prompt = emptyPrompt();
  S.objects = []; S.proposalMasks = []; S.objectMasks = new Map(); S.hidden = hiddenOf(S.info.id); S.focus = -1;
  history.replaceState(null, "", `#${S.info.id}`);  // a reload opens this image again
  remember(S.info.id);  // and so does opening the page again (progress.js)
  clearCanvas();
  $("file-name").textContent = `${S.info.file_name} (${index + 1}/${S.images.length})`;
  setState("loading", "loading image");
  render();
  try {
    const image = new Image();
    image.src = api.imageUrl(S.info.id);
    await image.decode();
    if (view !== S.view) return;
    S.image = image;
    fitView();
    await loadObjects();
    if (view !== S.view) return;
    setState("embedding", "computing the image embedding");
    render();
    const t = await api.embed(S.info.id);
    if (view !== S.view || document.body.dataset.state !== "embedding") return;  // clicked meanwhile
    setState("ready", t.cached ? "ready (embedding cached)" : `ready (embedded in ${t.seconds.toFixed(2)} s)`);
  } catch (err) {
    if (view === S.view) throw err;  // an error of an image left since is not shown
  }
}

// N and P: the next or previous image, or a word that there is none (the state is kept).
function step(by) {
  const index = S.index + by;
  if (index >= 0 && index < S.images.length) return openImage(index).catch(fail);
  const total = S.images.length;
  $("status").textContent = total
    ? `${by > 0 ? "last" : "first"} image (${S.index + 1}/${total}): there is no ${by > 0 ? "next" : "previous"} one`
    : "no images: upload some";
}

async function loadObjects() {
  const view = S.view;
  const objects = await api.annotations(S.info.id);
  if (view !== S.view) return;
  S.objects = objects;
  for (const obj of S.objects) {  // painted again when its colour changed (labels.js)
    const rgba = objectColor(obj), old = S.objectMasks.get(obj.id);
    if (String(old?.rgba) !== String(rgba)) S.objectMasks.set(obj.id, Object.assign(maskCanvas(obj.segmentation, rgba), { rgba }));
  }
  S.images[S.index].annotations = S.objects.length;
  S.images[S.index].sources = sourceCounts(S.objects);
  refreshCounts().catch(fail);
}

// -- prompts -> masks --------------------------------------------------------------------
function snapshot() {
  return { prompt: structuredClone(S.prompt), result: S.result, masks: S.masks, selected: S.selected };
}

function restore(snap) {
  Object.assign(S, { prompt: snap.prompt, result: snap.result, masks: snap.masks, selected: snap.selected });
  S.seq++;  // a prediction still in flight was asked for another prompt
}

// Undo (history.js) takes a prompt's change back with the prediction it had: no server call.
async function changePrompt(edit) {
  const before = snapshot(), step = record(promptStep(before));
  edit(S.prompt);
  await predict(() => { forget(step); restore(before); });
}

// `undoOnError()` puts the prompt back as it was when the prediction fails.
async function predict(undoOnError) {
  const { points, labels, box, text } = S.prompt;
  if (!points.length && !box && !text) { S.result = null; S.masks = []; render(); return; }
  const body = { points: points.length ? points : null, labels: points.length ? labels : null, box };
  if (text) Object.assign(body, { text, multimask: false });  // a phrase names one object
  // The candidate is fed back: an edited one (brush, eraser) as its mask, else its logits' token.
  const shown = S.result?.masks[S.selected];
  if (shown?.edited) body.mask = shown.segmentation;
  else if (S.result) body.mask_input = { token: S.result.token, index: S.selected };
  const seq = ++S.seq;
  const imageId = S.info.id;
  setState("predicting", "predicting");
  const t0 = performance.now();
  let result;
  try {
    result = await api.predict(imageId, body);
  } catch (err) {
    if (seq === S.seq) { undoOnError(); fail(err); render(); }
    return;
  }
  if (seq !== S.seq) return;  // a newer prompt is on its way, or another image is open
  S.result = { ...result, imageId };
  S.selected = result.best;
  S.masks = result.masks.map((m) => maskCanvas(m.segmentation, CURRENT));
  const ms = performance.now() - t0;
  const what = text ? `mask for "${text}"` : "mask";
  setState("ready", `${what} in ${ms.toFixed(0)} ms (model ${result.model_ms.toFixed(0)} ms)`);
  render();
}

function cycle() {
  if (!S.result) return;
  S.selected = (S.selected + 1) % S.result.masks.length;
  render();
}

function clearPrompt() {
  if (!S.prompt.points.length && !S.prompt.box && !S.prompt.text && !S.result) return;
  record(promptStep(snapshot()));
  S.prompt = emptyPrompt();
  S.result = null; S.masks = [];
  render();
}

function clear() {
  if (cancelEverything()) return;
  clearPrompt();
  if (S.editing !== null) { S.editing = null; render(); }
}

// The mask on screen is saved to the image it was predicted on, and taken off the screen at
// once (a second Enter does not save it twice); it comes back if the save fails. Undo deletes
// it and shows the candidate again.
async function accept() {
  if (!S.result) return;
  const view = S.view, seq = ++S.seq, before = snapshot();
  const m = S.result.masks[S.selected];
  const positives = S.prompt.points.filter((_, i) => S.prompt.labels[i] === 1);
  const text = S.prompt.text, source = m.edited ? "edited" : text ? "text" : "manual";
  const fields = annotationOf(m, positives.length ? positives : null, text, source);
  const saving = perform(acceptStep(S.result.imageId, fields, before));
  S.prompt = emptyPrompt();
  S.result = null; S.masks = [];
  render();
  let saved;
  try {
    saved = await saving;  // and the objects loaded again
  } catch (err) {
    if (seq === S.seq) { restore(before); render(); }
    throw err;
  }
  if (view !== S.view) return;
  // The label box keeps its text for the next object: say so, once per save.
  if (document.body.dataset.state === "ready") {
    setState("ready", `saved #${saved.id} as "${saved.label}"; the next object gets this label too (L to change it)`);
  }
  render();
}

function annotationOf(m, points, text, source) {
  const ann = { label: $("label").value, segmentation: m.segmentation, predicted_iou: m.predicted_iou, stability_score: m.stability_score, source };
  if (points) ann.point_coords = points;
  if (text) ann.text = text;
  return ann;
}

// -- editing -----------------------------------------------------------------------------
// The objects again after a change on the server (history.js), those in `stale` painted anew.
async function refresh(imageId, stale) {
  if (imageId !== S.info?.id) return;
  for (const id of stale) S.objectMasks.delete(id);
  await loadObjects();
  if (!S.objects.some((o) => o.id === S.editing)) S.editing = null;
  render();
}

// A change of an object (delete, relabel, a stroke) is saved through history.js, for undo.
function changeObject(step) {
  const view = S.view, imageId = S.info.id;
  return perform(step).catch((err) => { refresh(imageId, S.objects.map((o) => o.id)); failOn(view)(err); });
}

// -- segment everything ------------------------------------------------------------------
// E: with the settings below; G (pre-fill): with the server's, the AMG defaults (only
// confident masks). Cancel (or Esc) stops it on the server; then no proposals appear.
const settings = () => ({
  points_per_side: Number($("amg-points").value),
  pred_iou_thresh: Number($("amg-iou").value),
  stability_score_thresh: Number($("amg-stability").value),
  box_nms_thresh: Number($("amg-nms").value),
});

async function everything(options) {
  const view = S.view, imageId = S.info.id;
  setState("predicting", "segmenting everything (this runs the model on a grid of points)");
  const say = (text) => { if (view === S.view && document.body.dataset.state === "predicting") $("status").textContent = text; };
  const out = await runEverything(imageId, options, say);
  if (view !== S.view) return;  // proposals of an image left
  if (!out) { setState("ready", "segment everything cancelled"); return; }
  S.proposals = out.masks.map((m) => ({ ...m, imageId }));
  S.proposalMasks = out.masks.map((m, i) => {  // each keeps its colour when others leave the list
    const canvas = maskCanvas(m.segmentation, color(i + 7));
    canvas.colour = color(i + 7);
    return canvas;
  });
  setState("ready", `${out.masks.length} proposals in ${out.seconds.toFixed(1)} s: accept or discard them`);
  render();
}

// Accepted (one, or all: one undo step) or discarded proposals leave the screen at once (a
// second click does not save them twice); undo (history.js) puts them back.
async function acceptProposals(indexes) {
  const items = proposalItems(S, indexes);
  if (!items.length) return;
  const fields = items.map(({ proposal: p }) => annotationOf(p, p.point_coords, null, "proposal"));
  moveProposals(S.view, items, false);
  await perform(proposalsStep(items[0].proposal.imageId, items, fields));
}

function discardProposals(indexes) {
  const items = proposalItems(S, indexes);
  if (!items.length) return;
  record(discardStep(items));
  moveProposals(S.view, items, false);
}

// Proposals off the screen, or back on it (`onScreen`), if the image `view` is still open.
function moveProposals(view, items, onScreen) {
  if (view !== S.view) return;
  (onScreen ? putProposals : takeProposals)(S, items);
  S.focus = -1;
  if (document.body.dataset.state === "ready") {  // the status line counts what is left
    const n = S.proposals.length;
    setState("ready", n ? `${n} proposal(s) left: accept or discard them` : "no proposals left");
  }
  render();
}

// -- the page ---------------------------------------------------------------------------
function render() {
  renderPanels(S, actions);
  markSelected();
  renderTextBox(S.prompt.text);
  renderSources(S);
  renderPolygons();
  draw();
}

function hideAll() {
  S.hideAll = !S.hideAll;
  $("hide-all").setAttribute("aria-pressed", String(S.hideAll));
  render();
}

const actions = {
  openImage: (i) => openImage(i).catch(fail),
  select: (i) => { S.selected = i; render(); },
  toggleHidden,
  remove: (id) => changeObject(deleteStep(S.info.id, S.objects.find((o) => o.id === id))),
  rename: (id, label) => changeObject(patchStep(S.info.id, id, { label: S.objects.find((o) => o.id === id).label }, { label })),
  focus: (i) => { S.focus = i; draw(); },
  acceptProposals: (idx) => acceptProposals(idx).catch(failOn(S.view)),
  discardProposals,
  // A phrase starts a new object (no clicks, no mask fed back); null drops it, keeping the clicks.
  text: (phrase) => {
    if (!S.image || phrase === S.prompt.text) return;
    changePrompt((p) => { if (phrase) { Object.assign(p, emptyPrompt()); S.result = null; S.masks = []; } p.text = phrase; }).catch(fail);
  },
};

initView(S, {
  point: (xy, label) => changePrompt((p) => { p.points.push(xy); p.labels.push(label); }).catch(fail),
  box: (box) => changePrompt((p) => { p.box = box; }).catch(fail),
});
initHistory(S, { snapshot, restore: (snap) => { restore(snap); render(); }, refresh, fail, moveProposals });
initEdit(S, { colour: CURRENT, snapshot, change: changeObject, render, say: (text) => { $("status").textContent = text; } });
initHover(S, () => E.tool !== null);
initPolygons(S);
initKeys({
  ...viewKeys, ...editKeys, polygons: togglePolygons, hover: toggleHover,
  cycle, accept: () => accept().catch(failOn(S.view)), clear, undo, redo,
  next: () => step(1), prev: () => step(-1), everything: () => everything(settings()).catch(failOn(S.view)),
  prefill: () => everything({}).catch(failOn(S.view)),
  hideAll, label: () => $("label").select(), text: focusTextBox,
  chooseLabel: (key) => { if (key) chooseLabel(Number(key)); },
  markDone: () => mark(S, "done").catch(fail), markSkip: () => mark(S, "skipped").catch(fail),
});
initProgress(render);
$("cancel-everything").onclick = cancelEverything;
$("accept-all").onclick = () => actions.acceptProposals(S.proposals.map((_, i) => i));
$("discard-all").onclick = () => discardProposals(S.proposals.map((_, i) => i));
$("upload").onchange = async (e) => {
  let last = null;
  try {
    for (const file of e.target.files) last = await api.upload(file);
    await loadImages(last?.id);
  } catch (err) { fail(err); }
};
$("export-format").onchange = (e) => { $("export-zip").href = `/api/export/${e.target.value}.zip`; };
$("export-btn").onclick = async () => {
  try {
    const out = await api.exportAll($("export-format").value);
    const skipped = out.skipped.map((k) => `${k.file_name} #${k.annotation}: ${k.reason}`);
    $("export-result").textContent = `exported ${out.annotations} object(s) of ${out.images} image(s) to ${out.folder}/`
      + (skipped.length ? `; ${skipped.length} not written: ${skipped.join("; ")}` : "");
    document.body.dataset.exported = out.format;
  } catch (err) { fail(err); }
};
// For tests and the curious: the state, the pixel count of the mask on screen, the API calls
// not answered yet (at 0, every answer has been handled up to the call it led to), and the
// view with its image -> canvas mapping.
window.samkit = { state: S, shownArea: () => (S.masks.length ? S.masks[S.selected].area : 0), inFlight, view: V, toCanvas, edit: E, hover: H, polygons: P };
loadImages(decodeURIComponent(location.hash.slice(1)) || lastImage()).catch(fail);
initLabels(() => { if (S.info) loadObjects().then(render).catch(failOn(S.view)); }).catch(fail);
initTextBox(actions.text).catch(fail);
