"""onnxruntime side of tools/benchmarks/arm_estimate.py, run by an arm64 python3 under
qemu-aarch64: one session (1 thread, sequential, all graph optimisations, as perf.py), then
each group of queries: COUNT runs of the model on the given token ids + a numpy softmax.
usage: python3 ort_run.py MODEL.onnx '[[IDS, COUNT], ...]' [f32]
       python3 ort_run.py MODEL.onnx '[[IDS, COUNT, NGRAM_IDS], ...]' [f32]   (model with ngram_ids)
f32: onnxruntime's `MatMulNBits` (what it makes of the weights-int8 file's
`DequantizeLinear → MatMul`) asked to compute in f32 (`session.qdq_matmulnbits_accuracy_level`
0) instead of quantising the activations to int8: the computation the device's weights-int8
variant does.
NGRAM_IDS: the text's `ngram_ids` row, padded to the manifest's ngrams.max; arm_estimate.py
computes it on the host (tools/scripts/ngram_ids.py), as it does the token ids, so this
script needs only numpy and onnxruntime."""
import json
import sys

import numpy as np
import onnxruntime as ort

model, groups = sys.argv[1], json.loads(sys.argv[2])
f32 = sys.argv[3:] == ["f32"]
so = ort.SessionOptions()
if f32:
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
# No spin-waiting: a spin loop runs until a clock says stop, so its instruction count grows
# with how slowly qemu runs (a loaded machine had doubled the short-query counts).
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
so.add_session_config_entry("session.inter_op.allow_spinning", "0")
session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
takes_ngrams = "ngram_ids" in [i.name for i in session.get_inputs()]
done = 0
for ids, count, *ngrams in groups:
    if takes_ngrams != bool(ngrams):
        sys.exit(f"ort_run.py: the model {'takes' if takes_ngrams else 'has no'} ngram_ids input "
                 f"but the group has {'none' if not ngrams else 'some'}")
    a = np.array([ids], dtype=np.int64)
    feed = {"input_ids": a, "attention_mask": np.ones_like(a)}
    if ngrams:
        feed["ngram_ids"] = np.array([ngrams[0]], dtype=np.int64)
    for _ in range(count):
        logits = session.run(None, feed)[0][0]
        e = np.exp(logits - logits.max())
        p = e / e.sum()
        done += 1
print(json.dumps({"queries": done, "onnxruntime": ort.__version__, "best": int(p.argmax())}))
