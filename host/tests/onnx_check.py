#!/usr/bin/env python3
"""Reference check of a written model: onnx.checker (full_check) and onnxruntime.

Usage: onnx_check.py MODEL.onnx INPUTS.json
INPUTS.json: {"input_ids": [[...], ...], "attention_mask": [[...], ...]}, plus
"ngram_ids": [[...], ...] (each row padded to M) for a model with that third input
(int64 [batch, M], M fixed: the manifest's ngrams.max; tools/scripts/ngram_ids.py).
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
    names = [i.name for i in model.graph.input]
    assert names in (["input_ids", "attention_mask"], ["input_ids", "attention_mask", "ngram_ids"]), names
    assert [o.name for o in model.graph.output] == ["logits", "attention"]
    width = None
    for i in model.graph.input:
        assert i.type.tensor_type.elem_type == onnx.TensorProto.INT64, i
        dims = i.type.tensor_type.shape.dim
        if i.name == "ngram_ids":
            assert len(dims) == 2 and dims[0].dim_param == "batch" and dims[1].dim_value > 0, dims
            width = dims[1].dim_value
        else:
            assert [d.dim_param for d in dims] == ["batch", "seq"], dims

    with open(inputs_path) as f:
        inputs = json.load(f)
    assert sorted(inputs) == sorted(names), f"{inputs_path} has {sorted(inputs)}, the model takes {names}"
    feeds = {n: np.asarray(inputs[n], dtype=np.int64) for n in names}
    if width is not None:
        assert feeds["ngram_ids"].shape == (feeds["input_ids"].shape[0], width), feeds["ngram_ids"].shape
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
