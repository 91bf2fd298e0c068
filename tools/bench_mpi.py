#!/usr/bin/env python3
"""make bench-mpi: data-parallel training speed on the R50 512 bench case (ResNet-50 at 512x512,
3 classes, stages 3+ trainable, as train/bench.c), run through `mrcnn train` on a synthetic set
with a global batch of 2: 1 process x 1 thread, 1 process x 2 threads, 2 processes x 1 thread.
Prints images per second, scaling efficiency, the share of a step spent in MPI collectives, the
bytes all-reduced per step, and a labelled projection to 2-16 nodes. Asserts nothing."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys


def run(cmd, env):
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit("bench-mpi: %s failed:\n%s" % (" ".join(cmd), r.stdout[-3000:]))
    return r.stdout


def steps(run_dir):
    out = []
    with open(os.path.join(run_dir, "log.jsonl")) as f:
        for line in f:
            d = json.loads(line)
            if d.get("type") == "step":
                out.append(d)
    return out[1:]  # the first step warms caches and the arena


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mrcnn", default="build/mrcnn")
    ap.add_argument("--work", default="build/bench-mpi")
    ap.add_argument("--steps", type=int, default=6)
    a = ap.parse_args()
    mrcnn = os.path.abspath(a.mrcnn)
    work = os.path.abspath(a.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    env = dict(os.environ)
    data = os.path.join(work, "data")
    run([mrcnn, "synth", "--out", data, "--images", "10", "--size", "512", "--seed", "3",
         "--val-fraction", "0.2"], env)
    config = {
        "NAME": "bench-mpi", "BACKBONE": "resnet50",
        "CLASS_NAMES": ["BG", "benign", "malignant"], "CLASS_ATTRIBUTE": "class",
        "DATASET": {"TRAIN": data + "/train", "VAL": data + "/val"},
        "IMAGE_MIN_DIM": 512, "IMAGE_MAX_DIM": 512,
        "EPOCHS": 1, "STEPS_PER_EPOCH": a.steps, "VALIDATION_STEPS": 0, "VALIDATION_METRICS": 0,
        "BATCH_SIZE": 2, "LEARNING_RATE": 0.001, "WEIGHT_INIT": "glorot", "SEED": 1,
        "STAGES": [{"LAYERS": "3+", "UNTIL_EPOCH": 1, "LEARNING_RATE": 0.001}],
    }
    cfg_path = os.path.join(work, "bench.json")
    with open(cfg_path, "w") as f:
        json.dump(config, f)
    # The last case puts every gradient in one bucket, which can only start after backward: its
    # wait is the all-reduce itself, not overlapped (the rate the projection uses).
    cases = [("1 process x 1 thread", 1, 1, None), ("1 process x 2 threads", 1, 2, None),
             ("2 processes x 1 thread", 2, 1, None),
             ("2 processes x 1 thread, one bucket after backward", 2, 1, "1000000000")]
    res = {}
    for name, procs, threads, bucket in cases:
        out = os.path.join(work, "run-%dx%d%s" % (procs, threads, "-one-bucket" if bucket else ""))
        e = dict(env, OMP_NUM_THREADS=str(threads))
        if bucket:
            e["MRCNN_BUCKET_FLOATS"] = bucket
        cmd = [mrcnn, "train", "--config", cfg_path, "--out", out, "--quiet"]
        if procs > 1:
            cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(procs),
                   "-x", "OMP_NUM_THREADS"] + (["-x", "MRCNN_BUCKET_FLOATS"] if bucket else []) + cmd
        run(cmd, e)
        s = steps(out)
        sec = statistics.median(d["seconds"] for d in s)
        wait = statistics.median(d.get("allreduce_seconds", 0.0) for d in s)
        moved = statistics.median(d.get("allreduce_bytes", 0.0) for d in s)
        res[name] = (procs, threads, sec, wait, moved)
    base = res["1 process x 1 thread"][2]
    lines = ["", "## bench-mpi: data-parallel training, R50 at 512x512, global batch 2 "
             "(mrcnn train, medians of %d steps; 'in MPI' is the step's time inside the gradient "
             "sums: starting them, testing them between backward's operations, adding the "
             "slices, waiting for them)" % (a.steps - 1), "",
             "| run | s/step | images/s | speed-up | efficiency | in MPI | "
             "bytes all-reduced/step |", "|---|---|---|---|---|---|---|"]
    for name, (procs, threads, sec, wait, moved) in res.items():
        cores = procs * threads
        lines.append("| %s | %.2f | %.2f | %.2fx | %.0f%% | %s | %s |" % (
            name, sec, 2.0 / sec, base / sec, 100.0 * base / sec / cores,
            "%.0f%% (%.2f s)" % (100.0 * wait / sec, wait) if procs > 1 else "-",
            "%.1f MB" % (moved / 1e6) if procs > 1 else "-"))
    procs, threads, sec2, wait2, moved2 = res["2 processes x 1 thread"]
    _, _, sec1b, wait1b, moved1b = res["2 processes x 1 thread, one bucket after backward"]
    # The gradient all-reduce moves the trainable gradients once per step; a ring all-reduce
    # sends and receives 2 (N-1)/N of them per node. Compute per step: one image per process.
    grad_bytes = moved2
    compute = sec2 - wait2
    lines += ["", "Measured all-reduce rate on this machine (shared memory between 2 processes; one "
              "bucket after backward, so including any wait for the slower process): %.1f MB in "
              "%.3f s, %.2f GB/s." % (moved1b / 1e6, wait1b,
                                      moved1b / wait1b / 1e9 if wait1b > 0 else float("nan"))]
    lines += ["", "Projection (not measured): one image per process, the compute of the 2 x 1 run "
              "(%.2f s/step without collectives), a blocking ring all-reduce of %.1f MB of "
              "gradients after backward at the nominal link rate, no overlap (so conservative: the buckets "
              "overlap backward):" % (
                  compute, grad_bytes / 1e6), "",
              "| nodes | 10 Gbit/s: s/step | efficiency | 100 Gbit/s: s/step | efficiency |",
              "|---|---|---|---|---|"]
    for n in (2, 4, 8, 16):
        row = "| %d |" % n
        for gbit in (10, 100):
            comm = 2.0 * (n - 1) / n * grad_bytes / (gbit * 1e9 / 8)
            row += " %.2f | %.0f%% |" % (compute + comm, 100.0 * compute / (compute + comm))
        lines.append(row)
    text = "\n".join(lines) + "\n"
    print(text)
    with open("BENCHMARKS.md", "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
