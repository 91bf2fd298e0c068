// An exported model (mrcnn export --format onnx) timed in ONNX Runtime the way `mrcnn bench`
// times mrcnn's inference: one square image of the same synthetic pixels, batch 1, 2 threads,
// a warm-up run then the median of REPEATS. Prints one line: infer_s=... rss_mb=...
// Usage: MRCNN_ONNXRUNTIME=DIR node tools/bench_onnxruntime.mjs MODEL.onnx SIDE CHANNELS REPEATS
import { createRequire } from "node:module";
import { resolve } from "node:path";

const [model, side, channels, repeats] = [process.argv[2], ...process.argv.slice(3).map(Number)];
const dir = process.env.MRCNN_ONNXRUNTIME || "build/onnxruntime/node_modules/onnxruntime-node";
const ort = createRequire(import.meta.url)(resolve(dir));
const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 2, interOpNumThreads: 1 });
const images = new Float32Array(side * side * channels);
for (let i = 0; i < images.length; i++) images[i] = ((i * 7) % 255) - 120; // train/bench.c's pixels
const feeds = {
  images: new ort.Tensor("float32", images, [1, side, side, channels]),
  window: new ort.Tensor("float32", new Float32Array([0, 0, side, side]), [1, 4]),
};
const times = [];
for (let r = 0; r <= repeats; r++) {
  const t0 = performance.now();
  await session.run(feeds);
  if (r > 0) times.push((performance.now() - t0) / 1e3);
}
times.sort((a, b) => a - b);
const n = times.length, median = n % 2 ? times[(n - 1) / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
console.log(`infer_s=${median.toFixed(4)} rss_mb=${(process.resourceUsage().maxRSS / 1024).toFixed(1)}`);
