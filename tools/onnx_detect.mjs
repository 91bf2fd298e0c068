// Runs a model exported with `mrcnn export --format onnx` on one PNG in ONNX Runtime (npm
// onnxruntime-node) and prints its detections as `mrcnn predict` finds them: the image molded as
// mrcnn molds it (settings from the config inside the file), the graph run, the detections
// unmolded to image pixels with each mask's area. A user's starting point: no dependency but
// onnxruntime-node and Node's own zlib.
//
//   npm install --ignore-scripts onnxruntime-node@1.30.0
//   node tools/onnx_detect.mjs busi.onnx scan.png [--threshold 0.7] [--threads 2]
//
// MRCNN_ONNXRUNTIME may name the onnxruntime-node folder (make test's: build/onnxruntime/...).
import { createRequire } from "node:module";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { inflateSync } from "node:zlib";

function fail(message) {
  console.error(`onnx_detect: ${message}`);
  process.exit(1);
}

function loadOnnxRuntime() {
  const require = createRequire(import.meta.url);
  const candidates = [process.env.MRCNN_ONNXRUNTIME, "build/onnxruntime/node_modules/onnxruntime-node"];
  for (const dir of candidates) if (dir && existsSync(resolve(dir, "package.json"))) return require(resolve(dir));
  try {
    return require("onnxruntime-node");
  } catch {
    fail("onnxruntime-node not found: npm install --ignore-scripts onnxruntime-node@1.30.0");
  }
}

// ---- the ONNX file's metadata_props (ModelProto field 14), read with a tiny protobuf walk ----
function readVarint(buf, at) {
  let v = 0n, shift = 0n, b;
  do {
    b = buf[at.i++];
    v |= BigInt(b & 0x7f) << shift;
    shift += 7n;
  } while (b & 0x80);
  return v;
}

function fields(buf) {
  const out = [], at = { i: 0 };
  while (at.i < buf.length) {
    const key = Number(readVarint(buf, at)), field = key >> 3, wire = key & 7;
    if (wire === 0) out.push([field, readVarint(buf, at)]);
    else if (wire === 1) at.i += 8;
    else if (wire === 5) at.i += 4;
    else if (wire === 2) {
      const n = Number(readVarint(buf, at));
      out.push([field, buf.subarray(at.i, at.i + n)]);
      at.i += n;
    } else fail(`not an ONNX file (wire type ${wire})`);
  }
  return out;
}

function metadata(path) {
  const meta = {};
  for (const [field, value] of fields(readFileSync(path)))
    if (field === 14) {
      const kv = Object.fromEntries(fields(value).map(([f, v]) => [f, Buffer.from(v).toString("utf8")]));
      meta[kv[1]] = kv[2];
    }
  if (!meta.config) fail(`${path}: no mrcnn config in its metadata (export it with mrcnn export --format onnx)`);
  return { config: JSON.parse(meta.config), classNames: JSON.parse(meta.class_names) };
}

// ---- PNG -> 8-bit pixels (h, w, channels 1 or 3), as mrcnn's image loader gives them ---------
function decodePng(path, channels) {
  const buf = readFileSync(path);
  if (buf.readUInt32BE(0) !== 0x89504e47) fail(`${path}: not a PNG (this example reads PNG only)`);
  let at = 8, width, height, depth, type, interlace, palette, idat = [];
  while (at < buf.length) {
    const len = buf.readUInt32BE(at), kind = buf.toString("ascii", at + 4, at + 8), data = buf.subarray(at + 8, at + 8 + len);
    if (kind === "IHDR") [width, height, depth, type, interlace] = [data.readUInt32BE(0), data.readUInt32BE(4), data[8], data[9], data[12]];
    else if (kind === "PLTE") palette = data;
    else if (kind === "IDAT") idat.push(data);
    at += 12 + len;
  }
  if (interlace || (depth !== 8 && depth !== 16)) fail(`${path}: interlaced or ${depth}-bit PNG; save it as 8-bit`);
  const samples = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[type], bytes = depth / 8, bpp = samples * bytes;
  const raw = inflateSync(Buffer.concat(idat)), stride = width * bpp, rows = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? rows[y * stride + x - bpp] : 0, b = y ? rows[(y - 1) * stride + x] : 0;
      const c = x >= bpp && y ? rows[(y - 1) * stride + x - bpp] : 0;
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][filter];
      rows[y * stride + x] = (line[x] + pred) & 0xff;
    }
  }
  const px = new Uint8Array(width * height * channels);
  for (let i = 0; i < width * height; i++) {
    let rgb;
    if (type === 3) rgb = [0, 1, 2].map((k) => palette[rows[i] * 3 + k]);
    else if (samples <= 2) rgb = [rows[i * bpp], rows[i * bpp], rows[i * bpp]];
    else rgb = [0, 1, 2].map((k) => rows[i * bpp + k * bytes]);
    if (channels === 1) px[i] = samples <= 2 && type !== 3 ? rgb[0] : Math.floor((rgb[0] + rgb[1] + rgb[2] + 1) / 3);
    else for (let k = 0; k < 3; k++) px[i * 3 + k] = rgb[k];
  }
  return { width, height, px };
}

// ---- molding: layers/mold.c (Matterport's "square" resize, skimage bilinear, zero padding) ----
const roundEven = (v) => {
  const r = Math.round(v);
  return Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

function mold(img, cfg) {
  const { width: w, height: h, px } = img, c = cfg.IMAGE_CHANNEL_COUNT, side = cfg.IMAGE_MAX_DIM;
  let scale = Math.max(1, cfg.IMAGE_MIN_DIM / Math.min(h, w));
  if (roundEven(Math.max(h, w) * scale) > side) scale = side / Math.max(h, w);
  const rh = Math.max(1, roundEven(h * scale)), rw = Math.max(1, roundEven(w * scale));
  const top = Math.floor((side - rh) / 2), left = Math.floor((side - rw) / 2);
  const std = cfg.IMAGE_NORMALIZATION === "mean_std" ? cfg.PIXEL_STD : Array(c).fill(1);
  const out = new Float32Array(side * side * c);
  for (let k = 0; k < c; k++) {
    let lo = 255, hi = 0;
    for (let i = 0; i < w * h; i++) (lo = Math.min(lo, px[i * c + k])), (hi = Math.max(hi, px[i * c + k]));
    const at = (y, x) => (y < 0 || y >= h || x < 0 || x >= w ? 0 : px[(y * w + x) * c + k]);
    const keepZero = !(lo <= 0 && 0 <= hi), fy = h / rh, fx = w / rw;
    for (let y = 0; y < side; y++)
      for (let x = 0; x < side; x++) {
        const ry = y - top, rx = x - left;
        let v = 0;
        if (ry >= 0 && ry < rh && rx >= 0 && rx < rw) {
          const r = (ry + 0.5) * fy - 0.5, q = (rx + 0.5) * fx - 0.5;
          const r0 = Math.floor(r), r1 = Math.ceil(r), c0 = Math.floor(q), c1 = Math.ceil(q), dr = r - r0, dc = q - c0;
          const t = (1 - dc) * at(r0, c0) + dc * at(r0, c1), b = (1 - dc) * at(r1, c0) + dc * at(r1, c1);
          v = (1 - dr) * t + dr * b;
          if (!(keepZero && v === 0)) v = Math.min(Math.max(v, lo), hi);
          v = Math.trunc(Math.fround(v)); // astype(uint8)
        }
        out[(y * side + x) * c + k] = Math.fround(Math.fround(v - cfg.MEAN_PIXEL[k]) / std[k]);
      }
  }
  return { images: out, window: new Float32Array([top, left, top + rh, left + rw]) };
}

// ---- unmolding: Matterport's unmold_detections (boxes to image pixels, masks to their boxes) --
function unmold(detections, masks, d, m, window, h, w, side) {
  const wn = [0, 1, 2, 3].map((k) => Math.fround((window[k] - (k >= 2 ? 1 : 0)) / (side - 1)));
  const shift = [wn[0], wn[1], wn[0], wn[1]], size = [wn[2] - wn[0], wn[3] - wn[1], wn[2] - wn[0], wn[3] - wn[1]];
  const out = [];
  for (let i = 0; i < d && detections[i * 6 + 4] !== 0; i++) {
    const row = detections.subarray(i * 6, i * 6 + 6);
    const box = [0, 1, 2, 3].map((k) => {
      const b = Math.fround(Math.fround(row[k] - shift[k]) / Math.fround(size[k]));
      return roundEven(b * (k % 2 ? w - 1 : h - 1) + (k >= 2 ? 1 : 0));
    });
    const bh = box[2] - box[0], bw = box[3] - box[1];
    if (bh <= 0 || bw <= 0) continue;
    // The 28x28 mask resized to its box as mrcnn and Matterport do (skimage's bilinear warp: zero
    // outside the mask, values clipped to the mask's range), thresholded at 0.5; pixels of the
    // box outside the image are not counted.
    const mask = masks.subarray(i * m * m, (i + 1) * m * m);
    let lo = Infinity, hi = -Infinity;
    for (const v of mask) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
    const keepZero = !(lo <= 0 && 0 <= hi), at = (y, x) => (y < 0 || y >= m || x < 0 || x >= m ? 0 : mask[y * m + x]);
    let area = 0;
    for (let y = 0; y < bh; y++)
      for (let x = 0; x < bw; x++) {
        if (box[0] + y < 0 || box[0] + y >= h || box[1] + x < 0 || box[1] + x >= w) continue;
        const r = (y + 0.5) * (m / bh) - 0.5, q = (x + 0.5) * (m / bw) - 0.5;
        const r0 = Math.floor(r), r1 = Math.ceil(r), c0 = Math.floor(q), c1 = Math.ceil(q), dr = r - r0, dc = q - c0;
        let v = (1 - dr) * ((1 - dc) * at(r0, c0) + dc * at(r0, c1)) + dr * ((1 - dc) * at(r1, c0) + dc * at(r1, c1));
        if (!(keepZero && v === 0)) v = Math.min(Math.max(v, lo), hi);
        area += v >= 0.5;
      }
    out.push({ classId: row[4], score: row[5], box, area });
  }
  return out;
}

// ---- main ---------------------------------------------------------------------------------------
const args = process.argv.slice(2), opt = { threshold: null, threads: 2 };
const positional = [];
for (let i = 0; i < args.length; i++)
  if (args[i] === "--threshold") opt.threshold = Number(args[++i]);
  else if (args[i] === "--threads") opt.threads = Number(args[++i]);
  else positional.push(args[i]);
const [modelPath, imagePath] = positional;
if (!modelPath || !imagePath) fail("usage: node tools/onnx_detect.mjs MODEL.onnx IMAGE.png [--threshold T] [--threads N]");
if (!existsSync(modelPath)) fail(`${modelPath}: no such file`);
if (!existsSync(imagePath)) fail(`${imagePath}: no such file`);

const ort = loadOnnxRuntime();
const { config: cfg, classNames } = metadata(modelPath);
const img = decodePng(imagePath, cfg.IMAGE_CHANNEL_COUNT);
const { images, window } = mold(img, cfg);
const side = cfg.IMAGE_MAX_DIM, c = cfg.IMAGE_CHANNEL_COUNT;
const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: opt.threads, interOpNumThreads: 1 });
const t0 = performance.now();
const result = await session.run({
  images: new ort.Tensor("float32", images, [1, side, side, c]),
  window: new ort.Tensor("float32", window, [1, 4]),
});
const ms = performance.now() - t0;
const d = result.detections.dims[1], m = result.masks.dims[2];
const found = unmold(result.detections.data, result.masks.data, d, m, window, img.height, img.width, side)
  .filter((x) => opt.threshold === null || x.score >= opt.threshold);
console.log(`${imagePath}: ${img.width}x${img.height}, ${found.length} detection(s) in ${ms.toFixed(0)} ms`);
for (const x of found)
  console.log(`  ${classNames[x.classId] ?? `class${x.classId}`} ${x.score.toFixed(3)} box y1=${x.box[0]} x1=${x.box[1]} y2=${x.box[2]} x2=${x.box[3]} mask ${x.area} px`);
