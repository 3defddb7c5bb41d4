// The data engine's semi-automatic stage: segment everything as a job the page follows
// (points done of all, polled) and can cancel (the Cancel button, or Esc while it runs),
// and how many masks of the image and of the project each stage made.
import { api } from "./api.js";

const $ = (id) => document.getElementById(id);
const SOURCES = ["manual", "text", "proposal"];
let running = null;  // { id, cancelled } of the job this page waits for

// Run segment everything on `imageId` with `options` (the server's defaults, the AMG
// defaults, where left out), telling `say(text)` its progress. Returns the answer, or null
// when it was cancelled (its proposals, if any came, are dropped).
export async function runEverything(imageId, options, say) {
  const job = { id: `job-${crypto.randomUUID()}`, cancelled: false };
  running = job;
  $("cancel-everything").hidden = false;
  const poll = setInterval(async () => {
    const p = await api.everythingProgress(job.id).catch(() => null);  // 404 before it starts, after it ends
    if (p && running === job && !job.cancelled) say(`segmenting everything: ${p.done} / ${p.total} points`);
  }, 250);
  try {
    const out = await api.everything(imageId, { ...options, job: job.id });
    return out.cancelled || job.cancelled ? null : out;
  } finally {
    clearInterval(poll);
    if (running === job) { running = null; $("cancel-everything").hidden = true; }
  }
}

// Stop the job this page waits for; false when there is none.
export function cancelEverything() {
  if (!running) return false;
  running.cancelled = true;
  api.cancelEverything(running.id).catch(() => {});  // 404: it had just finished
  return true;
}

export function sourceCounts(objects) {
  const out = Object.fromEntries(SOURCES.map((s) => [s, 0]));
  for (const obj of objects) out[obj.source ?? "unknown"] = (out[obj.source ?? "unknown"] ?? 0) + 1;
  return out;
}

const line = (c) => Object.entries(c).map(([s, n]) => `${s} ${n}`).join(" · ");

// The masks per source of the image open (its objects) and of the project (the image list's
// counts for the other images).
export function renderSources(S) {
  const image = sourceCounts(S.objects);
  const project = { ...image };
  S.images.forEach((im, i) => {
    if (i === S.index) return;
    for (const [s, n] of Object.entries(im.sources ?? {})) project[s] = (project[s] ?? 0) + n;
  });
  $("sources-image").textContent = `this image: ${line(image)}`;
  $("sources-project").textContent = `project: ${line(project)}`;
  document.body.dataset.sources = JSON.stringify({ image, project });
}
