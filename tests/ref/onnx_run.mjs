// Runs an ONNX file mrcnn exported in ONNX Runtime (npm onnxruntime-node) on molded images the
// parity test wrote, and writes the raw outputs back for it to compare with mrcnn's own.
// Usage: node onnx_run.mjs MODEL.onnx IN.bin OUT.bin  (MRCNN_ONNXRUNTIME: the package folder)
// IN.bin: int32 N, S, C, then float32 images (N, S, S, C), then float32 windows (N, 4).
// OUT.bin: int32 D, M, then float32 detections (N, D, 6), then float32 masks (N, D, M, M).
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";

const [model, inPath, outPath] = process.argv.slice(2);
const ortDir = process.env.MRCNN_ONNXRUNTIME;
if (!model || !inPath || !outPath || !ortDir) {
  console.error("usage: MRCNN_ONNXRUNTIME=DIR node onnx_run.mjs MODEL.onnx IN.bin OUT.bin");
  process.exit(2);
}
const ort = createRequire(import.meta.url)(resolve(ortDir));
const buf = readFileSync(inPath);
const head = new Int32Array(buf.buffer, buf.byteOffset, 3);
const [n, s, c] = head;
const images = new Float32Array(buf.buffer.slice(buf.byteOffset + 12, buf.byteOffset + 12 + n * s * s * c * 4));
const winAt = buf.byteOffset + 12 + n * s * s * c * 4;
const window = new Float32Array(buf.buffer.slice(winAt, winAt + n * 16));
const threads = Number(process.env.OMP_NUM_THREADS || 1);
const session = await ort.InferenceSession.create(model, {
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  executionProviders: ["cpu"],
});
const t0 = process.hrtime.bigint();
const out = await session.run({
  images: new ort.Tensor("float32", images, [n, s, s, c]),
  window: new ort.Tensor("float32", window, [n, 4]),
});
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
const det = out.detections, masks = out.masks;
const d = det.dims[1], m = masks.dims[2];
const header = Buffer.from(new Int32Array([d, m]).buffer);
writeFileSync(outPath, Buffer.concat([header, Buffer.from(det.data.buffer, det.data.byteOffset, det.data.byteLength),
  Buffer.from(masks.data.buffer, masks.data.byteOffset, masks.data.byteLength)]));
console.log(`onnxruntime ${ort.env.versions?.common ?? ""}: ${n} image(s) in ${ms.toFixed(1)} ms`);
