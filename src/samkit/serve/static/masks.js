// COCO RLE masks in the browser: decode (compressed or not) and paint onto canvases.
// RLE counts run over the mask in column-major order, the first run counting zeros.

// Counts of a compressed COCO RLE string (pycocotools' rleFrString).
export function decodeCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// An offscreen canvas of the mask's size with `rgba` ([r, g, b, a] 0..255) where it is set.
// Also returns the number of set pixels.
export function maskCanvas(rle, rgba) {
  const [h, w] = rle.size;
  const counts = typeof rle.counts === "string" ? decodeCounts(rle.counts) : rle.counts;
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  const px = new Uint32Array(img.data.buffer);
  const value = new Uint32Array(new Uint8ClampedArray(rgba).buffer)[0];
  let pos = 0, area = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i];
    if (i % 2 === 1 && n > 0) {
      // Walk down the run's columns: one division a run, none a pixel.
      let x = (pos / h) | 0, y = pos - x * h, idx = y * w + x;
      for (let k = 0; k < n; k++) {
        px[idx] = value;
        if (++y === h) { y = 0; x++; idx = x; } else idx += w;
      }
      area += n;
    }
    pos += n;
  }
  ctx.putImageData(img, 0, 0);
  canvas.area = area;
  return canvas;
}

// A mask canvas (set where alpha is not 0) as an uncompressed COCO RLE, what the API takes:
// column-major counts, the first one a run of unset pixels. Also returns the set pixels' count.
export function canvasRle(canvas) {
  const w = canvas.width, h = canvas.height;
  const data = canvas.getContext("2d").getImageData(0, 0, w, h).data;
  const counts = [];
  let run = 0, value = false, area = 0;
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) {
      const set = data[(y * w + x) * 4 + 3] !== 0;
      if (set !== value) { counts.push(run); run = 0; value = set; }
      run++;
      if (set) area++;
    }
  }
  counts.push(run);
  return { rle: { size: [h, w], counts }, area };
}

// The outline of a mask canvas: its set pixels within `band` pixels of an unset one (the 8
// neighbours, and the (2 band + 1)^2 square for a wider band; outside the image counts as
// unset), in the mask's colours; the inside left clear. Each pixel is inside when its square
// is all set: runs of set pixels along the rows, then down the columns of those.
export function outlineCanvas(mask, band) {
  const w = mask.width, h = mask.height, run = 2 * band + 1;
  const img = mask.getContext("2d").getImageData(0, 0, w, h);
  const px = new Uint32Array(img.data.buffer);
  const rows = new Uint8Array(w * h), inside = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0, streak = 0; x < w; x++) {
      streak = px[y * w + x] ? streak + 1 : 0;
      if (streak >= run) rows[y * w + x - band] = 1;  // the row's square span ends at x
    }
  }
  for (let x = 0; x < w; x++) {
    for (let y = 0, streak = 0; y < h; y++) {
      streak = rows[y * w + x] ? streak + 1 : 0;
      if (streak >= run) inside[(y - band) * w + x] = 1;
    }
  }
  for (let i = 0; i < px.length; i++) if (inside[i]) px[i] = 0;
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h;
  canvas.getContext("2d").putImageData(img, 0, 0);
  canvas.band = band;
  return canvas;
}

const PALETTE = [
  [230, 25, 75], [60, 180, 75], [255, 200, 25], [67, 99, 216], [245, 130, 49],
  [145, 30, 180], [70, 240, 240], [240, 50, 230], [188, 246, 12], [0, 128, 128],
  [154, 99, 36], [128, 0, 0], [170, 255, 195], [128, 128, 0], [0, 0, 117],
];

// Masks are painted opaque; the page draws them at the opacity chosen (view.js).
export function color(i, alpha = 255) {
  const c = PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
  return [c[0], c[1], c[2], alpha];
}

export function css(rgba) {
  return `rgb(${rgba[0]}, ${rgba[1]}, ${rgba[2]})`;
}
