// The JSON API, one function per endpoint. Errors become Error(detail) from the server.

async function call(method, url, body) {
  const init = { method, headers: {} };
  if (body instanceof FormData) {
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
  images: () => call("GET", "/api/images"),
  upload(file) {
    const form = new FormData();
    form.append("file", file);
    return call("POST", "/api/images", form);
  },
  imageUrl: (id) => `${img(id)}/image`,
  embed: (id) => call("POST", `${img(id)}/embed`),
  predict: (id, prompt) => call("POST", `${img(id)}/predict`, prompt),
  everything: (id, options) => call("POST", `${img(id)}/everything`, options),
  annotations: (id) => call("GET", `${img(id)}/annotations`),
  addAnnotation: (id, ann) => call("POST", `${img(id)}/annotations`, ann),
  relabel: (id, n, label) => call("PATCH", `${img(id)}/annotations/${n}`, { label }),
  deleteAnnotation: (id, n) => call("DELETE", `${img(id)}/annotations/${n}`),
  exportAll: (format) => call("POST", "/api/export", { format }),
};
