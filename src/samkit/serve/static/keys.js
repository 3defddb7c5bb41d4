// The page's keys. One table, SHORTCUTS, makes the key handler, the titles of the controls
// that do the same as the keys, and the map that "?" opens; MOUSE lists the mouse's gestures
// beside them. docs/annotator.md has the same two tables (tests/test_serve_browser_view.py
// compares them).
//
// A row: `keys` as the map shows them ("Shift+Z" is Z with Shift; a letter alone also answers
// with Shift when no row names Shift with it), what they do, the id of the control on the
// page that does the same, and the name of the action (initKeys' `actions`; a key calls it
// with its name, "1" for the key 1, and a button with none).
export const SHORTCUTS = [
  { keys: ["Tab"], does: "next of the 3 candidate masks", control: "next-candidate", act: "cycle" },
  { keys: ["Enter"], does: "accept the mask with the label", control: "accept", act: "accept" },
  { keys: ["Esc"], does: "cancel segment everything, else clear the prompts (or close this map)", control: "clear", act: "clear" },
  { keys: ["Z"], does: "undo the last prompt", control: "undo", act: "undo" },
  { keys: ["Shift+Z", "Y"], does: "redo", control: "redo", act: "redo" },
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
  { keys: ["?"], does: "show / hide this map of keys", control: "keys-map", act: "map" },
];

export const MOUSE = [
  ["left click", "add a positive point"],
  ["right click, Alt+click", "add a negative point"],
  ["drag", "draw a box"],
  ["wheel", "zoom in or out around the cursor"],
  ["middle drag, Space+drag", "pan"],
];

const $ = (id) => document.getElementById(id);
export const keysOf = (row) => row.keys.join(", ");

// The name a key press has in SHORTCUTS: letters upper case, with "Shift+" when Shift is down.
function nameOf(e) {
  if (e.key === "Escape") return "Esc";
  if (/^[a-z]$/i.test(e.key)) return (e.shiftKey ? "Shift+" : "") + e.key.toUpperCase();
  return e.key;
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
    if (e.ctrlKey || e.metaKey) return;  // the browser's own (Ctrl+0, Ctrl+F, ...)
    const text = typing(e.target);
    if (e.key === " ") {  // held: a left drag pans (and a focused button is not pressed)
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
    const act = byName.get(name) ?? byName.get(name.replace("Shift+", ""));
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
