// The text box: a phrase naming the object ("the red box") is one more prompt, which the
// model reads as one token beside the points and the box. Enter or "Segment" starts a new
// object with the phrase alone; clicks afterwards refine its mask and carry the phrase with
// them. Submitting an emptied box drops the phrase (the clicks stay); Esc, accepting the
// object and opening another image drop it too. Shown only for a model with a text head
// (GET /api/info says so).
import { api } from "./api.js";

const $ = (id) => document.getElementById(id);
let shown = null;  // the phrase in force when the box was last written

// `submit(phrase)` gets the box's phrase, stripped (null when empty), on Enter or "Segment".
export async function initTextBox(submit) {
  const input = $("text");
  const send = () => { input.blur(); submit(input.value.trim() || null); };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {  // the box's own: not the page's Enter (accept)
      e.preventDefault(); e.stopPropagation(); send();
    } else if (e.key === "Escape") {
      input.value = "";  // and the page's Esc clears the prompts
    }
  });
  $("text-go").onclick = send;
  const info = await api.info();
  $("text-box").hidden = !info.text;
}

// The box is written when the phrase in force changes (a submit, undo, Esc, accept, another
// image), so a phrase being typed is left alone by the renders in between.
export function renderTextBox(text) {
  if (text === shown) return;
  $("text").value = text ?? "";
  shown = text;
}

// T: type a phrase (when the model takes one).
export function focusTextBox() {
  if (!$("text-box").hidden) $("text").select();
}
