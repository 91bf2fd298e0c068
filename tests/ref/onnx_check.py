#!/usr/bin/python3
"""Checks an ONNX file mrcnn exported with Debian's python3-onnx: the full checker, strict shape
inference, and the declared inputs, outputs and metadata. Prints one line per fact; exits 1 with
the reason on the first failure. Usage: onnx_check.py MODEL.onnx"""
import json
import sys

import onnx
from onnx import shape_inference


def dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def main(path):
    onnx.checker.check_model(path, full_check=True)
    print("checker: ok (full_check)")
    model = onnx.load(path)
    inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    print("shape inference: ok,", len(inferred.graph.value_info), "values typed")
    print("opset:", ",".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in model.opset_import))
    for v in model.graph.input:
        print("input", v.name, dims(v))
    for v in inferred.graph.output:
        print("output", v.name, dims(v))
    meta = {p.key: p.value for p in model.metadata_props}
    print("metadata:", " ".join(sorted(meta)))
    for key in ("config", "class_names", "mrcnn_version"):
        if key not in meta:
            sys.exit(f"metadata_props has no {key}")
    names = json.loads(meta["class_names"])
    config = json.loads(meta["config"])
    if config.get("NUM_CLASSES") != len(names):
        sys.exit(f"class_names has {len(names)} names, the config's NUM_CLASSES is {config.get('NUM_CLASSES')}")
    print("classes:", " | ".join(names))
    print("nodes:", len(model.graph.node), "initializers:", len(model.graph.initializer))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        main(sys.argv[1])
    except Exception as e:  # one line: what failed
        sys.exit(f"{sys.argv[1]}: {type(e).__name__}: {str(e).strip().splitlines()[0]}")
