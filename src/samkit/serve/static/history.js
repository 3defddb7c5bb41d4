// Undo and redo (Ctrl+Z / Z, Ctrl+Shift+Z / Shift+Z / Y) over what the page changes on the
// image open: prompts (a click, a box, a phrase, Esc), strokes on the candidate and discarded
// proposals, which live in the page, and accepts (of the candidate or of proposals), object
// edits (a stroke, a relabel) and deletes, which change the server. `S.history` holds the
// steps done, newest last, `S.future` the steps undone; each step has undo() and redo(). The
// history is the image's: opening an image starts an empty one (app.js), as it starts with no
// prompt.
// Steps run one at a time, in order (a chain of promises), so a quick Ctrl+Z after Enter
// waits for the accept's save before deleting it. A step whose server call fails stays where
// it was and the error is shown.
// Re-creating an annotation (undo of a delete, redo of an accept) gives it a new id: `aliases`
// maps each id to the one that replaced it, so the steps written with the old id still apply.
import { api } from "./api.js";

let S = null;
// The app's: snapshot(), restore(snap), refresh(imageId, staleIds), fail(err), and
// moveProposals(view, items, onScreen) (items: prefill.js's proposalItems).
let app = null;
let chain = Promise.resolve();
const aliases = new Map();

export function initHistory(state, appHooks) {
  S = state;
  app = appHooks;
}

const resolve = (id) => (aliases.has(id) ? resolve(aliases.get(id)) : id);

export function clearHistory() {
  S.history = [];
  S.future = [];
  aliases.clear();
}

// A step done already (a prompt's, a stroke on the candidate): undo() takes it back.
export function record(step) {
  S.history.push(step);
  S.future = [];
  return step;
}

export function forget(step) {
  S.history = S.history.filter((s) => s !== step);
}

// Run `job` after the steps before it; returns its promise.
function enqueue(job) {
  const run = chain.then(job);
  chain = run.catch(() => {});
  return run;
}

// A step to do now (it changes the server): recorded at once, so that undo finds it in order,
// then done in turn; forgotten if it fails. Resolves to what its redo() gives.
export function perform(step) {
  record(step);
  return enqueue(async () => {
    try {
      return await step.redo();
    } catch (err) {
      forget(step);
      throw err;
    }
  });
}

function travel(from, to, method) {
  return enqueue(async () => {
    const view = S.view, step = S[from].pop();
    if (!step) return;
    try {
      await step[method]();
    } catch (err) {
      if (view === S.view) S[from].push(step);
      throw err;
    }
    if (view === S.view) S[to].push(step);
  }).catch(app.fail);
}
export const undo = () => travel("history", "future", "undo");
export const redo = () => travel("future", "history", "redo");

// -- steps -------------------------------------------------------------------------------
// What the page shows (prompt and candidate) before and after a change of the prompt or a
// stroke on the candidate.
export function promptStep(before) {
  let after = null;
  return {
    undo() { after = app.snapshot(); app.restore(before); },
    redo() { app.restore(after); },
  };
}

// The fields that make an annotation again as it was (POST /api/images/{id}/annotations).
const KEPT = ["label", "segmentation", "predicted_iou", "stability_score", "point_coords", "text", "source"];
const fieldsOf = (ann) => Object.fromEntries(KEPT.filter((k) => ann[k] != null).map((k) => [k, ann[k]]));

// Accepting the candidate (`before`: the page then) saves `fields` as an annotation; undo
// deletes it and shows the candidate again, redo saves it again.
export function acceptStep(imageId, fields, before) {
  let first = null, after = null;
  return {
    async redo() {
      const made = await api.addAnnotation(imageId, fields);
      if (first === null) first = made.id;
      else aliases.set(resolve(first), made.id);
      if (after) app.restore(after);
      await app.refresh(imageId, []);
      return made;
    },
    async undo() {
      await api.deleteAnnotation(imageId, resolve(first));
      after = app.snapshot();
      app.restore(before);
      await app.refresh(imageId, []);
    },
  };
}

// PATCH annotation `id` to `after` (label, segmentation, source); undo sends `before`.
export function patchStep(imageId, id, before, after) {
  const apply = async (fields) => {
    const changed = await api.editAnnotation(imageId, resolve(id), fields);
    await app.refresh(imageId, [resolve(id)]);
    return changed;
  };
  return { redo: () => apply(after), undo: () => apply(before) };
}

// Deleting annotation `ann` (as stored); undo makes it again, with its mask, label and source.
export function deleteStep(imageId, ann) {
  return {
    async redo() {
      await api.deleteAnnotation(imageId, resolve(ann.id));
      await app.refresh(imageId, []);
    },
    async undo() {
      const made = await api.addAnnotation(imageId, fieldsOf(ann));
      aliases.set(resolve(ann.id), made.id);
      await app.refresh(imageId, []);
    },
  };
}

// Accepting proposals `items` (one, or all at once: one step) saves `fields[k]` for item k;
// undo deletes those annotations and puts the proposals back on screen, redo saves them again
// (new ids) and takes the proposals off. Each item's state is kept, so a step cut short by a
// failed request goes on from where it stopped when tried again.
export function proposalsStep(imageId, items, fields) {
  const view = S.view, first = items.map(() => null), saved = items.map(() => false);
  const show = async () => {  // the proposals not saved (all, after an undo) back on screen
    const back = items.filter((_, k) => !saved[k]);
    if (back.length) app.moveProposals(view, back, true);
    await app.refresh(imageId, []);
  };
  return {
    async redo() {
      app.moveProposals(view, items, false);
      try {
        for (const [k, f] of fields.entries()) {
          if (saved[k]) continue;
          const made = await api.addAnnotation(imageId, f);
          if (first[k] === null) first[k] = made.id;
          else aliases.set(resolve(first[k]), made.id);
          saved[k] = true;
        }
      } finally {
        await show();  // none, unless a save failed
      }
    },
    async undo() {
      try {
        for (const k of first.keys()) {
          if (!saved[k]) continue;
          await api.deleteAnnotation(imageId, resolve(first[k]));
          saved[k] = false;
        }
      } finally {
        await show();
      }
    },
  };
}

// Discarding proposals `items`: undo puts them back on screen, redo takes them off again.
export function discardStep(items) {
  const view = S.view;
  return {
    undo() { app.moveProposals(view, items, true); },
    redo() { app.moveProposals(view, items, false); },
  };
}
