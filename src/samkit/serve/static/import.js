// Import annotations (POST /api/import) from a COCO instances or SA-1B JSON file picked with
// "Import…". The server matches images by file name, skips masks an image has already and
// reports the rest. Once the label set and the image list are read again and the open image's
// objects are drawn as the server now has them, the counts go to the status line, and the
// labels added and each annotation not imported (with the reason) under the button.
import { api } from "./api.js";
import { L, renderLabels } from "./labels.js";
import { reloadImages } from "./panels.js";

const $ = (id) => document.getElementById(id);
const LISTED = 20;  // annotations not imported named under the button; the rest are counted

const counts = (name, out) => `imported ${out.imported} object(s) on ${out.images} image(s) from ${name}, `
  + `${out.duplicates} duplicate(s) skipped, ${out.problems.length} not imported`;

// "a.png #7", "image 3 [2]" (the annotation by its index: it has no id), ...
function which(p) {
  const image = p.file_name ?? (p.image_id === null ? null : `image ${p.image_id}`);
  const ann = p.id === null ? `[${p.annotation}]` : `#${p.id}`;
  return image ? `${image} ${ann}` : ann;
}

function details(out) {
  const problems = out.problems.slice(0, LISTED).map((p) => `${which(p)}: ${p.reason}`);
  if (out.problems.length > LISTED) problems.push(`and ${out.problems.length - LISTED} more`);
  const left = out.labels_left_out.map((l) => `${l.name} (${l.reason})`);
  return [
    out.labels_added.length ? `Labels added: ${out.labels_added.join(", ")}.` : "",
    left.length ? `Not added to the labels: ${left.join("; ")}.` : "",
    problems.length ? `Not imported: ${problems.join("; ")}.` : "",
  ].filter(Boolean).join(" ");
}

$("import").onchange = async (e) => {
  const file = e.target.files[0];
  e.target.value = "";  // so that picking the same file again imports it again
  if (!file) return;
  $("status").textContent = `importing ${file.name}`;
  $("import-result").textContent = "";
  try {
    const out = await api.importFile(file);
    L.labels = await api.labels();
    renderLabels();
    await reloadImages();
    $("status").textContent = counts(file.name, out);
    $("import-result").textContent = details(out);
  } catch (err) {
    document.body.dataset.state = "error";
    $("status").textContent = `import of ${file.name}: ${err.message}`;
  }
  // Imports finished, answered or not (the tests wait for it).
  document.body.dataset.imports = String(Number(document.body.dataset.imports ?? 0) + 1);
};
