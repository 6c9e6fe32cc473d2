#!/usr/bin/env python3
"""Reference check of a written model: onnx.checker (full_check) and onnxruntime.

Usage: onnx_check.py MODEL.onnx INPUTS.json
INPUTS.json: {"input_ids": [[...], ...], "attention_mask": [[...], ...]}
Prints {"logits": [[...]], "attention": [[...]]} from onnxruntime on stdout.
Needs: pip install onnx onnxruntime numpy
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main() -> None:
    model_path, inputs_path = sys.argv[1], sys.argv[2]
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8, model.ir_version
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)], model.opset_import
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in model.graph.output] == ["logits", "attention"]
    for i in model.graph.input:
        dims = [d.dim_param for d in i.type.tensor_type.shape.dim]
        assert dims == ["batch", "seq"], dims

    with open(inputs_path) as f:
        inputs = json.load(f)
    feeds = {k: np.asarray(v, dtype=np.int64) for k, v in inputs.items()}
    options = ort.SessionOptions()
    if "int8-compute" in model_path:
        # On x86-64 without VNNI onnxruntime's int8 matmul multiplies u8 x s8 pairs into a
        # saturating 16-bit sum (vpmaddubsw) unless asked for its exact kernels: the
        # reference must be exact, as tract's integer arithmetic is.
        options.add_session_config_entry("session.x64quantprecision", "1")
    session = ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])
    logits, attention = session.run(["logits", "attention"], feeds)
    json.dump({"logits": logits.tolist(), "attention": attention.tolist()}, sys.stdout)


if __name__ == "__main__":
    main()
