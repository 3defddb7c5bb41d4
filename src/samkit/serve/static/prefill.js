// The data engine's semi-automatic stage: segment everything as a job the page follows
// (points done of all, polled) and can cancel (the Cancel button, or Esc while it runs),
// its proposals taken off the list and put back (accept, discard and their undo), and how many
// masks of the image and of the project each stage made.
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

// The proposals at `indexes` of S.proposals as items for history.js's steps: each with its
// mask and its place in the list then, where putProposals puts it back.
export function proposalItems(S, indexes) {
  return indexes.map((index) => ({ index, proposal: S.proposals[index], mask: S.proposalMasks[index] }));
}

export function takeProposals(S, items) {
  const gone = new Set(items.map((it) => it.proposal));
  const kept = S.proposals.map((p) => !gone.has(p));
  S.proposals = S.proposals.filter((_, i) => kept[i]);
  S.proposalMasks = S.proposalMasks.filter((_, i) => kept[i]);
}

// Put back in order of their former places, each lands where it was (those still on screen stay).
export function putProposals(S, items) {
  for (const it of [...items].sort((a, b) => a.index - b.index)) {
    if (S.proposals.includes(it.proposal)) continue;
    const at = Math.min(it.index, S.proposals.length);
    S.proposals.splice(at, 0, it.proposal);
    S.proposalMasks.splice(at, 0, it.mask);
  }
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
