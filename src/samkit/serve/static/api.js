// The JSON API, one function per endpoint. Errors become Error(detail) from the server.
// Every call but GET carries `X-Samkit: 1`: the server refuses writes without it (a page of
// another web site cannot send it). `inFlight()` counts the calls not answered yet (tests).

let pending = 0;
export const inFlight = () => pending;

async function call(method, url, body) {
  pending++;
  try {
    return await send(method, url, body);
  } finally {
    pending--;
  }
}

async function send(method, url, body) {
  const init = { method, headers: method === "GET" ? {} : { "X-Samkit": "1" } };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body instanceof Blob) {  // a JSON file picked on the page, sent as it is
    init.headers["content-type"] = "application/json";
    init.body = body;
  } else if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.detail || `${res.status} ${res.statusText}`);
  return data;
}

const img = (id) => `/api/images/${encodeURIComponent(id)}`;

export const api = {
  info: () => call("GET", "/api/info"),
  images: () => call("GET", "/api/images"),
  upload(file) {
    const form = new FormData();
    form.append("file", file);
    return call("POST", "/api/images", form).then((entries) => entries[0]);
  },
  imageUrl: (id) => `${img(id)}/image`,
  embed: (id) => call("POST", `${img(id)}/embed`),
  predict: (id, prompt) => call("POST", `${img(id)}/predict`, prompt),
  everything: (id, options) => call("POST", `${img(id)}/everything`, options),
  annotations: (id) => call("GET", `${img(id)}/annotations`),
  addAnnotation: (id, ann) => call("POST", `${img(id)}/annotations`, ann),
  relabel: (id, n, label) => call("PATCH", `${img(id)}/annotations/${n}`, { label }),
  // any of label, segmentation and source
  editAnnotation: (id, n, fields) => call("PATCH", `${img(id)}/annotations/${n}`, fields),
  polygons: (id, n) => call("GET", `${img(id)}/annotations/${n}/polygons`),
  importFile: (file) => call("POST", "/api/import", file),
  deleteAnnotation: (id, n) => call("DELETE", `${img(id)}/annotations/${n}`),
  exportAll: (format) => call("POST", "/api/export", { format }),
  everythingProgress: (job) => call("GET", `/api/everything/${encodeURIComponent(job)}`),
  cancelEverything: (job) => call("DELETE", `/api/everything/${encodeURIComponent(job)}`),
  labels: () => call("GET", "/api/labels"),
  setLabels: (labels) => call("PUT", "/api/labels", { labels }),
  mark: (id, state) => call("PUT", `${img(id)}/state`, { state }),
  progress: () => call("GET", "/api/progress"),
};
