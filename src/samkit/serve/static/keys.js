// The page's keys. One table, SHORTCUTS, makes the key handler, the titles of the controls
// that do the same as the keys, and the map that "?" opens; MOUSE lists the mouse's gestures
// beside them. docs/annotator.md has the same two tables (tests/test_serve_browser_view.py
// compares them).
//
// A row: `keys` as the map shows them ("Shift+Z" is Z with Shift; a letter alone also answers
// with Shift when no row names Shift with it; "Ctrl+Z" is Z with Ctrl, or with Cmd on a Mac,
// and a key with Ctrl answers only to a row that names Ctrl), what they do, the id of the
// control on the page that does the same, and the name of the action (initKeys' `actions`; a
// key calls it with its name, "1" for the key 1, and a button with none).
export const SHORTCUTS = [
  { keys: ["Tab"], does: "next of the 3 candidate masks", control: "next-candidate", act: "cycle" },
  { keys: ["Enter"], does: "accept the mask with the label", control: "accept", act: "accept" },
  { keys: ["Esc"], does: "cancel segment everything, else clear the prompts and unselect the object (or close this map)", control: "clear", act: "clear" },
  { keys: ["Ctrl+Z", "Z"], does: "undo the last click, box, phrase, stroke, accept, edit, delete or discard", control: "undo", act: "undo" },
  { keys: ["Ctrl+Shift+Z", "Shift+Z", "Y"], does: "redo", control: "redo", act: "redo" },
  { keys: ["N"], does: "next image", control: "next", act: "next" },
  { keys: ["P"], does: "previous image", control: "prev", act: "prev" },
  { keys: ["E"], does: "segment everything", control: "everything", act: "everything" },
  { keys: ["G"], does: "pre-fill: propose the confident masks (AMG defaults)", control: "prefill", act: "prefill" },
  { keys: ["H"], does: "hide / show the accepted objects", control: "hide-all", act: "hideAll" },
  { keys: ["L"], does: "edit the label", control: "label", act: "label" },
  { keys: ["1", "2", "3", "4", "5", "6", "7", "8", "9"], does: "choose that label of the set for the next object", control: "label", act: "chooseLabel" },
  { keys: ["D"], does: "mark the image done (again: unmark)", control: "mark-done", act: "markDone" },
  { keys: ["S"], does: "skip the image (again: unmark)", control: "mark-skip", act: "markSkip" },
  { keys: ["T"], does: "type what to segment, then Enter (models with a text head)", control: "text", act: "text" },
  { keys: ["+", "="], does: "zoom in", control: "zoom-in", act: "zoomIn" },
  { keys: ["-"], does: "zoom out", control: "zoom-out", act: "zoomOut" },
  { keys: ["0", "F"], does: "fit the whole image in the window", control: "fit", act: "fit" },
  { keys: ["["], does: "fainter masks (opacity - 10%)", control: "opacity", act: "opacityDown" },
  { keys: ["]"], does: "stronger masks (opacity + 10%)", control: "opacity", act: "opacityUp" },
  { keys: ["O"], does: "outlines only / filled masks", control: "outline", act: "outline" },
  { keys: ["B"], does: "brush: a drag paints the candidate or the selected object (again: off)", control: "brush", act: "brush" },
  { keys: ["X"], does: "eraser: a drag erases from the candidate or the selected object (again: off)", control: "eraser", act: "eraser" },
  { keys: [","], does: "smaller brush (radius in image pixels)", control: "brush-size", act: "brushSmaller" },
  { keys: ["."], does: "larger brush", control: "brush-size", act: "brushLarger" },
  { keys: ["V"], does: "polygon view of the selected object: its outlines and vertices", control: "polygons", act: "polygons" },
  { keys: ["M"], does: "hover preview: the mask under the mouse, drawn faintly", control: "hover", act: "hover" },
  { keys: ["?"], does: "show / hide this map of keys", control: "keys-map", act: "map" },
];

export const MOUSE = [
  ["left click", "add a positive point; Shift+click: select the accepted object under it (again, or elsewhere: unselect)"],
  ["right click, Alt+click", "add a negative point"],
  ["drag", "draw a box; with the brush or eraser on: paint or erase"],
  ["wheel", "zoom in or out around the cursor"],
  ["middle drag, Space+drag", "pan"],
];

const $ = (id) => document.getElementById(id);
export const keysOf = (row) => row.keys.join(", ");

// The name a key press has in SHORTCUTS: letters upper case, with "Shift+" when Shift is down,
// and "Ctrl+" before when Ctrl (or Cmd) is.
function nameOf(e) {
  if (e.key === "Escape") return "Esc";
  const ctrl = e.ctrlKey || e.metaKey ? "Ctrl+" : "";
  if (/^[a-z]$/i.test(e.key)) return ctrl + (e.shiftKey ? "Shift+" : "") + e.key.toUpperCase();
  return ctrl + e.key;
}

// Keys typed into a text field are the field's (a slider, a button or a list takes none).
function typing(target) {
  return target instanceof HTMLInputElement && !["range", "checkbox", "button", "file"].includes(target.type);
}

function showMap(shown) {
  $("keymap").hidden = !shown;
  $("keys-map").setAttribute("aria-pressed", String(shown));
}

function renderMap() {
  const rows = [...SHORTCUTS.map((row) => [keysOf(row), row.does]), ...MOUSE];
  $("keymap-table").replaceChildren(...rows.map(([keys, does], i) => {
    const tr = document.createElement("tr");
    if (i === SHORTCUTS.length) tr.className = "mouse";  // the mouse's rows start here
    for (const text of [keys, does]) tr.insertCell().textContent = text;
    return tr;
  }));
}

// Bind the keys and the buttons to `actions` (one function per row's `act`, taking no
// argument; "map" is this module's own, and `space(down)` hears the space bar, held to pan).
export function initKeys(actions) {
  const acts = { ...actions, map: () => showMap($("keymap").hidden) };
  const byName = new Map();
  const titles = new Map();  // control id -> what its keys do
  for (const row of SHORTCUTS) {
    const act = acts[row.act];
    if (!act || !$(row.control)) throw new Error(`keys.js: no action "${row.act}" or control #${row.control}`);
    for (const key of row.keys) byName.set(key, act);
    titles.set(row.control, [...(titles.get(row.control) ?? []), `${row.does} (${keysOf(row)})`]);
    const control = $(row.control);
    if (control instanceof HTMLButtonElement) control.onclick = () => act();
  }
  for (const [id, lines] of titles) $(id).title = lines.join("; ");
  renderMap();
  $("keymap-close").onclick = () => showMap(false);

  window.addEventListener("keydown", (e) => {
    const text = typing(e.target);
    if (e.key === " " && !e.ctrlKey && !e.metaKey) {  // held: a left drag pans (and a focused button is not pressed)
      if (!text) { e.preventDefault(); acts.space(true); }
      return;
    }
    if (text && e.key !== "Enter" && e.key !== "Escape") return;
    const name = nameOf(e);
    if (!$("keymap").hidden && (name === "Esc" || name === "?")) {
      e.preventDefault();
      showMap(false);
      return;
    }
    const ctrl = name.startsWith("Ctrl+");  // else the browser's own (Ctrl+0, Ctrl+F, ...)
    const act = ctrl ? byName.get(name) : byName.get(name) ?? byName.get(name.replace("Shift+", ""));
    if (!act) return;
    e.preventDefault();
    if (text) e.target.blur();
    act(name);
  });
  window.addEventListener("keyup", (e) => {
    if (e.key !== " " || typing(e.target)) return;
    e.preventDefault();
    acts.space(false);
  });
  window.addEventListener("blur", () => acts.space(false));  // its keyup may never come
}
