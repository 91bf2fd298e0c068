#!/usr/bin/python3
"""`make quality`: mrcnn and torchvision's Mask R-CNN trained side by side on the same generated
breast-ultrasound set, with the same architecture width, steps, batch, learning-rate schedule,
augmentation and trainable layers, both scored twice: by `mrcnn evaluate --predictions` and by
the independent scorer tests/ref/score_predictions.py. Prints mask AP50, mask AP, box AP50,
sensitivity and Dice for both, appends the run to BENCHMARKS.md, and ends with one
machine-readable line: mask_ap50_ratio=R mask_ap_ratio=R (mrcnn over torchvision, each a mean over
training seeds, geometric mean over the image sizes).

The data is `mrcnn synth --preset hard` at a seed of the tuning range (1000-1999 by default);
report held-out figures with --seed from another range (2000-2999), which no setting was tuned on.
"""
import argparse
import concurrent.futures
import datetime
import glob
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = [("mask_ap50", "mask AP50"), ("mask_ap", "mask AP"), ("box_ap50", "box AP50"),
           ("sensitivity", "sensitivity"), ("dice", "Dice")]


def run(cmd, log):
    """Runs a command, its output to `log`; stops the benchmark with the log's tail on failure."""
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if rc != 0:
        tail = open(log).read()[-2000:]
        sys.exit("quality: %s failed (exit %d); end of %s:\n%s" % (cmd[0], rc, log, tail))
    return time.time() - t0


def mrcnn_scores(evaluation_json):
    e = json.load(open(evaluation_json))
    segm, bbox, les = e["coco"]["segm"], e["coco"]["bbox"], e["lesions"]
    return {"mask_ap50": segm["AP50"], "mask_ap": segm["AP"], "box_ap50": bbox["AP50"],
            "sensitivity": les["sensitivity"], "dice": les["mean_dice"] or 0.0}


def score_both(args, config, val, pred, work, tag):
    """The same predictions through mrcnn's evaluate and the independent scorer."""
    ev = os.path.join(work, "eval-" + tag)
    run([args.mrcnn, "evaluate", "--predictions", pred, "--config", config, "--data", val,
         "--out", ev, "--quiet"], os.path.join(work, "evaluate-%s.log" % tag))
    ours = mrcnn_scores(os.path.join(ev, "evaluation.json"))
    ref_json = os.path.join(work, "score-%s.json" % tag)
    run(["/usr/bin/python3", "tests/ref/score_predictions.py", "--data", val, "--pred", pred,
         "--config", config, "--json", ref_json], os.path.join(work, "score-%s.log" % tag))
    ref = json.load(open(ref_json))
    worst = max(abs(ours[k] - ref[k]) for k, _ in METRICS)
    return ours, worst


def one_run(args, data, evalset, size, seed):
    """One training seed at one size, both tools: trained on data/train, scored on evalset."""
    work = os.path.join(args.out, "size-%d" % size, "seed-%d" % seed)
    os.makedirs(work, exist_ok=True)
    config = json.load(open(os.path.join(ROOT, args.config)))
    config["IMAGE_MIN_DIM"] = config["IMAGE_MAX_DIM"] = size
    config["AUGMENT"] = {"FLIP": 0.5}  # the twin implements flips only: the same on both sides
    config["SEED"] = seed
    config.pop("DATASET", None)
    cfg_path = os.path.join(work, "config.json")
    json.dump(config, open(cfg_path, "w"), indent=1)

    run_dir = os.path.join(work, "mrcnn-run")
    subprocess.call(["rm", "-rf", run_dir])
    t_mrcnn = run([args.mrcnn, "train", "--config", cfg_path, "--data", data, "--out", run_dir,
                   "--quiet"], os.path.join(work, "mrcnn-train.log"))
    ckpts = sorted(glob.glob(os.path.join(run_dir, "ckpt-e*.h5")))
    pred_m = os.path.join(work, "pred-mrcnn")
    subprocess.call(["rm", "-rf", pred_m])
    t_mrcnn += run([args.mrcnn, "predict", "--weights", ckpts[-1], evalset, "--out", pred_m,
                    "--threshold", "0"], os.path.join(work, "mrcnn-predict.log"))

    pred_t = os.path.join(work, "pred-torchvision")
    subprocess.call(["rm", "-rf", pred_t])
    t_tv = run(["/usr/bin/python3", "tests/ref/quality_torchvision.py", "--config", cfg_path,
                "--data", data, "--val", evalset, "--out", pred_t, "--threads", "1"],
               os.path.join(work, "torchvision.log"))

    m, dm = score_both(args, cfg_path, evalset, pred_m, work, "mrcnn")
    t, dt = score_both(args, cfg_path, evalset, pred_t, work, "torchvision")
    return {"size": size, "seed": seed, "mrcnn": m, "torchvision": t, "scorer_gap": max(dm, dt),
            "seconds": {"mrcnn": t_mrcnn, "torchvision": t_tv}}


def mean_of(runs, tool):
    return {k: sum(r[tool][k] for r in runs) / len(runs) for k, _ in METRICS}


def ratio(a, b):
    return a / b if b > 0 else (float("inf") if a > 0 else 1.0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="128,256", help="image sides, comma-separated")
    p.add_argument("--seed", type=int, default=1001,
                   help="synth seed of the training set; the evaluation set is seed + 1 "
                   "(tuning range 1000-1999, held out 2000-2999)")
    p.add_argument("--images", type=int, default=320, help="training-set images (a quarter for "
                   "validation during training)")
    p.add_argument("--eval-images", type=int, default=400, help="evaluation-set images")
    p.add_argument("--runs", type=int, default=3, help="training seeds per size (11, 12, ...)")
    p.add_argument("--parallel", type=int, default=2, help="runs at once, one thread each")
    p.add_argument("--config", default="configs/tiny.json", help="the recipe and width compared")
    p.add_argument("--out", default="build/quality")
    p.add_argument("--mrcnn", default="build/mrcnn")
    p.add_argument("--no-record", action="store_true", help="do not append to BENCHMARKS.md")
    args = p.parse_args()
    args.out = os.path.abspath(args.out)
    args.mrcnn = os.path.abspath(args.mrcnn)
    os.makedirs(args.out, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = "1"  # runs go side by side, one thread each

    def synth(seed, images, val_fraction):
        d = os.path.join(args.out, "data-hard-%d" % seed)
        if not os.path.exists(os.path.join(d, "val", "via_region_data.json")):
            subprocess.call(["rm", "-rf", d])  # half-written by an interrupted run: synth wants it empty
            run([args.mrcnn, "synth", "--out", d, "--images", str(images), "--seed", str(seed),
                 "--size", "256", "--preset", "hard", "--val-fraction", str(val_fraction)],
                os.path.join(args.out, "synth-%d.log" % seed))
        return d

    data = synth(args.seed, args.images, 0.25)
    evalset = os.path.join(synth(args.seed + 1, args.eval_images, 0.99), "val")
    jobs = [(int(size), 11 + k) for size in args.sizes.split(",") for k in range(args.runs)]
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        done = list(pool.map(lambda j: one_run(args, data, evalset, *j), jobs))
    results = []
    for size in sorted({j[0] for j in jobs}):
        runs = [r for r in done if r["size"] == size]
        results.append({"size": size, "runs": len(runs), "mrcnn": mean_of(runs, "mrcnn"),
                        "torchvision": mean_of(runs, "torchvision"),
                        "scorer_gap": max(r["scorer_gap"] for r in runs),
                        "seconds": {t: sum(r["seconds"][t] for r in runs) / len(runs)
                                    for t in ("mrcnn", "torchvision")},
                        "each": [(r["mrcnn"]["mask_ap50"], r["torchvision"]["mask_ap50"])
                                 for r in runs]})

    lines = ["## %s, commit %s, `make quality`" % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                       text=True).stdout.strip() or "unknown"), "",
        "Trained on `mrcnn synth --preset hard --seed %d --images %d --size 256`, scored on "
        "%d images of seed %d; config %s with flips only, the same budget for both; means over "
        "training seeds 11-%d; scored by `mrcnn evaluate --predictions` (the independent scorer "
        "agrees within the gap shown)." % (args.seed, args.images, args.eval_images,
                                           args.seed + 1, args.config, 10 + args.runs), "",
        "| size | metric | mrcnn | torchvision | ratio |", "|---|---|---|---|---|"]
    for r in results:
        for k, name in METRICS:
            lines.append("| %d | %s | %.3f | %.3f | %.2f |" % (
                r["size"], name, r["mrcnn"][k], r["torchvision"][k],
                ratio(r["mrcnn"][k], r["torchvision"][k])))
        lines.append("| %d | mask AP50 per seed | %s | %s | |" % (
            r["size"], ", ".join("%.3f" % e[0] for e in r["each"]),
            ", ".join("%.3f" % e[1] for e in r["each"])))
        lines.append("| %d | train + predict s (one thread) | %.0f | %.0f | |" % (
            r["size"], r["seconds"]["mrcnn"], r["seconds"]["torchvision"]))
    gaps = max(r["scorer_gap"] for r in results)

    def gmean(key):
        vals = [ratio(r["mrcnn"][key], r["torchvision"][key]) for r in results]
        return math.exp(sum(math.log(max(v, 1e-9)) for v in vals) / len(vals))

    last = "mask_ap50_ratio=%.3f mask_ap_ratio=%.3f" % (gmean("mask_ap50"), gmean("mask_ap"))
    lines += ["", "Largest difference between the two scorers: %.2g." % gaps, "", last, ""]
    print("\n".join(lines[2:-2]))
    if not args.no_record:
        with open(os.path.join(ROOT, "BENCHMARKS.md"), "a") as f:
            f.write("\n" + "\n".join(lines))
    if gaps > 1e-3:
        sys.exit("quality: the two scorers disagree by %.3g; see %s" % (gaps, args.out))
    print(last)


if __name__ == "__main__":
    main()
