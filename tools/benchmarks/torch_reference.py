#!/usr/bin/env python3
"""PyTorch reference of the tiny attention classifier, for training-speed comparison.

The same architecture as host/src/model (docs/model.md): word + position embeddings with
LayerNorm, N post-LN BERT encoder layers (erf GELU, additive key mask), additive attention
pooling over real tokens, linear classifier. The same recipe as `tools train`: AdamW
(lr 1e-3, weight decay 0.01 except biases/LayerNorm), 6 % linear warm-up then linear
decay, gradient-norm clip 1.0, label smoothing 0.1, 15 % word dropout to [MASK], batch
32, length-bucketed batches padded to the batch's longest, 10 % validation split. Not
reproduced: the EMA of weights and early stopping (neither changes examples/s much).

    torch_reference.py --train train.csv --tokenizer CKPT/tokenizer.json \
        [--epochs 2] [--threads 1] [--config CKPT/config.json] [--json]

Prints one JSON line per epoch: {"epoch", "examples_per_s", "seconds", "val_accuracy",
"elapsed"} (training time only in examples/s; `elapsed` includes evaluation). Not part
of CI: PyTorch is a large install.
"""
import argparse
import csv
import json
import math
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import tokenizers


class Layer(nn.Module):
    def __init__(self, d, h, ffn, eps):
        super().__init__()
        self.h = h
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.i = nn.Linear(d, ffn)
        self.f = nn.Linear(ffn, d)
        self.ln2 = nn.LayerNorm(d, eps=eps)
        self.drop = nn.Dropout(0.1)

    def forward(self, x, ext):
        b, s, d = x.shape
        dh = d // self.h
        split = lambda t: t.view(b, s, self.h, dh).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + ext, dim=-1)
        a = (p @ v).transpose(1, 2).reshape(b, s, d)
        x = self.ln1(x + self.drop(self.o(a)))
        f = self.f(F.gelu(self.i(x)))  # erf form (approximate="none")
        return self.ln2(x + self.drop(f))


class Classifier(nn.Module):
    def __init__(self, vocab, d, layers, h, ffn, da, max_len, classes, eps=1e-12):
        super().__init__()
        self.words = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.ln = nn.LayerNorm(d, eps=eps)
        self.layers = nn.ModuleList(Layer(d, h, ffn, eps) for _ in range(layers))
        self.pool = nn.Linear(d, da)
        self.u = nn.Linear(da, 1, bias=False)
        self.cls = nn.Linear(d, classes)
        self.drop = nn.Dropout(0.1)

    def forward(self, ids, mask):
        s = ids.shape[1]
        x = self.drop(self.ln(self.words(ids) + self.pos(torch.arange(s))))
        neg = (1.0 - mask.float()) * -1e9
        ext = neg[:, None, None, :]
        for layer in self.layers:
            x = layer(x, ext)
        scores = self.u(torch.tanh(self.pool(x))).squeeze(-1) + neg
        alpha = torch.softmax(scores, dim=-1)
        pooled = (alpha.unsqueeze(-1) * x).sum(1)
        return self.cls(self.drop(pooled))


def batches(examples, bs, rng):
    """Length-bucketed: shuffle, sort chunks of 50 batches by length, shuffle batches."""
    idx = list(range(len(examples)))
    rng.shuffle(idx)
    out = []
    chunk = bs * 50
    for c in range(0, len(idx), chunk):
        part = sorted(idx[c : c + chunk], key=lambda i: len(examples[i][0]))
        out += [part[j : j + bs] for j in range(0, len(part), bs)]
    rng.shuffle(out)
    return out


def tensorise(examples, batch, mask_id=None, p_drop=0.0, rng=None):
    s = max(len(examples[i][0]) for i in batch)
    ids = torch.zeros(len(batch), s, dtype=torch.long)
    mask = torch.zeros(len(batch), s, dtype=torch.long)
    for r, i in enumerate(batch):
        t = list(examples[i][0])
        if p_drop and mask_id is not None:
            t = [t[0]] + [mask_id if rng.random() < p_drop else x for x in t[1:-1]] + [t[-1]]
        ids[r, : len(t)] = torch.tensor(t)
        mask[r, : len(t)] = 1
    y = torch.tensor([examples[i][1] for i in batch])
    return ids, mask, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--config", help="checkpoint config.json (sizes); default: tiny preset")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    cfg = dict(hidden=128, layers=2, heads=4, ffn=512, pool_dim=128, layer_norm_eps=1e-12)
    if a.config:
        cfg.update(json.load(open(a.config)))
    tok = tokenizers.Tokenizer.from_file(a.tokenizer)
    tok.enable_truncation(a.max_len)
    tok.no_padding()
    rows = list(csv.DictReader(open(a.train, newline="", encoding="utf-8")))
    labels = sorted({r["label"] for r in rows})
    lab = {l: i for i, l in enumerate(labels)}
    enc = tok.encode_batch([r["text"] for r in rows])
    data = [(e.ids, lab[r["label"]]) for e, r in zip(enc, rows)]
    rng.shuffle(data)
    n_val = len(data) // 10
    val, train = data[:n_val], data[n_val:]
    model = Classifier(tok.get_vocab_size(), cfg["hidden"], cfg["layers"], cfg["heads"],
                       cfg["ffn"], cfg["pool_dim"], a.max_len, len(labels),
                       cfg["layer_norm_eps"])
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and "ln" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() > 1 and "ln" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    steps = a.epochs * math.ceil(len(train) / a.batch_size)
    warm = max(1, int(0.06 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / (steps - warm)))
    mask_id = tok.token_to_id("[MASK]")
    started = time.perf_counter()
    for epoch in range(1, a.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        for b in batches(train, a.batch_size, rng):
            ids, mask, y = tensorise(train, b, mask_id, 0.15, rng)
            loss = F.cross_entropy(model(ids, mask), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        secs = time.perf_counter() - t0
        model.eval()
        correct = 0
        with torch.no_grad():
            for j in range(0, len(val), 128):
                b = list(range(j, min(j + 128, len(val))))
                ids, mask, y = tensorise(val, b)
                correct += (model(ids, mask).argmax(-1) == y).sum().item()
        print(json.dumps({"epoch": epoch, "examples_per_s": len(train) / secs, "seconds": secs,
                          "val_accuracy": correct / len(val),
                          "elapsed": time.perf_counter() - started,
                          "threads": a.threads, "batch_size": a.batch_size,
                          "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
