// The project's label set (GET/PUT /api/labels): names and colours, in order. Keys 1-9
// choose a label for the next object: it is written into the label box, which Enter (accept)
// reads, so a name typed there (L) still works for a label outside the set. Accepted objects
// are drawn in their label's colour; an object whose label is not in the set keeps a palette
// colour of its own. The panel adds, renames (the set only: objects keep their label; ✎ on
// an object relabels it) and recolours labels, and shows how many objects each has.
import { api } from "./api.js";
import { color } from "./masks.js";

const $ = (id) => document.getElementById(id);
export const L = { labels: [], counts: {} };
let changed = () => {};  // the app's: redraw the objects in the colours now in force

const rgba = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)).concat(255);

// The colour an accepted object is drawn in.
export function objectColor(obj) {
  const label = L.labels.find((l) => l.name === obj.label);
  return label ? rgba(label.color) : color(obj.id);
}

// Key n (1-9): the set's n-th label for the next object.
export function chooseLabel(n) {
  const label = L.labels[n - 1];
  $("status").textContent = label
    ? `label ${n}: the next object is "${label.name}"`
    : `no label ${n}: the set has ${L.labels.length} (add them under Labels)`;
  if (label) { $("label").value = label.name; renderLabels(); }
}

async function save(labels) {
  try {
    L.labels = await api.setLabels(labels);
  } catch (err) {
    $("status").textContent = err.message;
  }
  renderLabels();
  changed();
}

function row(label, i) {
  const li = document.createElement("li");
  if (label.name === $("label").value) li.classList.add("active");
  const pick = document.createElement("input");
  pick.type = "color"; pick.value = label.color; pick.title = "change the colour";
  pick.onchange = () => save(L.labels.map((l, j) => (j === i ? { ...l, color: pick.value } : l)));
  const name = document.createElement("span");
  name.className = "grow";
  name.textContent = `${i < 9 ? `${i + 1} ` : ""}${label.name}`;
  const count = document.createElement("span");
  count.className = "small"; count.textContent = String(L.counts[label.name] ?? 0);
  const rename = document.createElement("button");
  rename.textContent = "✎"; rename.title = "rename this label (objects keep theirs)";
  rename.onclick = (e) => {
    e.stopPropagation();
    const to = window.prompt("Label", label.name);
    if (to) save(L.labels.map((l, j) => (j === i ? { ...l, name: to } : l)));
  };
  li.append(pick, name, count, rename);
  li.onclick = (e) => { if (e.target !== pick) chooseLabel(i + 1); };
  return li;
}

export function renderLabels(counts = L.counts) {
  L.counts = counts;
  $("labels").replaceChildren(...L.labels.map(row));
}

// `onChange()` runs after the set changes (the objects' colours may have).
export async function initLabels(onChange) {
  changed = onChange;
  const input = $("label-new");
  const add = () => {
    const name = input.value.trim();
    if (name) { input.value = ""; save([...L.labels, { name }]); }
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); e.stopPropagation(); add(); }  // not accept
  });
  $("label-add").onclick = add;
  L.labels = await api.labels();
  renderLabels();
  changed();
}
