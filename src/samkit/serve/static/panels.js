// The side panels: image list, candidate masks, proposals and accepted objects.
import { api } from "./api.js";
import { objectColor } from "./labels.js";
import { color, css } from "./masks.js";
import { renderProgress, shown, stateOf } from "./progress.js";

const $ = (id) => document.getElementById(id);
// The model's predicted IoU is a regression output and can fall outside [0, 1]; an IoU cannot.
export const iou = (value, digits) => `IoU ${Math.min(Math.max(value, 0), 1).toFixed(digits)}`;

function item(text, { active = false, swatch = null, small = "", buttons = [] } = {}) {
  const li = document.createElement("li");
  if (active) li.classList.add("active");
  if (swatch) {
    const s = document.createElement("span");
    s.className = "swatch"; s.style.background = css(swatch);
    li.append(s);
  }
  const name = document.createElement("span");
  name.className = "grow"; name.textContent = text;
  li.append(name);
  if (small) {
    const s = document.createElement("span");
    s.className = "small"; s.textContent = small;
    li.append(s);
  }
  for (const [label, title, onClick] of buttons) {
    const b = document.createElement("button");
    b.textContent = label; b.title = title;
    b.onclick = (e) => { e.stopPropagation(); onClick(); };
    li.append(b);
  }
  return li;
}

let last = null;  // the state and actions of the last render, which reloadImages reopens with

// The project changed on the server (an import): list the images again, with their counts,
// and open the image open now again, so that its objects are drawn as the server has them (a
// prompt in progress on it is dropped, as opening an image drops it).
export async function reloadImages() {
  if (!last) return;
  const { S, actions } = last;
  const openId = S.info?.id;
  S.images = await api.images();
  const i = S.images.findIndex((im) => im.id === openId);
  if (S.images.length) await actions.openImage(Math.max(i, 0));
  else renderPanels(S, actions);
}

export function renderPanels(S, actions) {
  last = { S, actions };
  $("images").replaceChildren(...S.images.flatMap((im, i) => {
    if (!shown(im)) return [];
    const state = stateOf(im);
    const li = item(im.file_name, { active: i === S.index, small: `${im.annotations || ""} ${state === "new" ? "" : state}` });
    li.dataset.state = state;
    li.onclick = () => actions.openImage(i);
    return [li];
  }));
  renderProgress(S.images);

  const masks = S.result ? S.result.masks : [];
  $("candidates").replaceChildren(...masks.map((m, i) => {
    const li = item(`candidate ${i + 1}`, {
      active: i === S.selected, small: `${iou(m.predicted_iou, 3)} · ${m.area} px`,
    });
    li.onclick = () => actions.select(i);
    return li;
  }));
  if (!masks.length) {
    $("candidates").append(item("click or drag on the image", { small: "" }));
  }

  $("proposals").hidden = S.proposals.length === 0;
  $("proposal-list").replaceChildren(...S.proposals.map((m, i) => {
    const li = item(`proposal ${i + 1}`, {
      swatch: S.proposalMasks[i]?.colour ?? color(i + 7), small: iou(m.predicted_iou, 2),
      buttons: [["✓", "accept with the label", () => actions.acceptProposals([i])],
        ["✗", "discard", () => actions.discardProposals([i])]],
    });
    li.onmouseenter = () => { li.classList.add("active"); actions.focus(i); };
    li.onmouseleave = () => { li.classList.remove("active"); actions.focus(-1); };
    return li;
  }));

  $("objects").replaceChildren(...S.objects.map((obj) => {
    const hidden = S.hidden.has(obj.id);
    const li = item(`#${obj.id} ${obj.label}`, {
      swatch: objectColor(obj), small: `${obj.area} px`,
      buttons: [
        [hidden ? "show" : "hide", "hide or show this object", () => actions.toggleHidden(obj.id)],
        ["✎", "change the label", () => {
          const label = window.prompt("Label", obj.label);
          if (label) actions.rename(obj.id, label);
        }],
        ["✕", "delete this object", () => {
          if (window.confirm(`Delete object #${obj.id} (${obj.label})?`)) actions.remove(obj.id);
        }],
      ],
    });
    if (hidden) li.classList.add("hidden-object");
    return li;
  }));
}
