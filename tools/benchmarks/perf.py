#!/usr/bin/env python3
"""Speed and footprint, measured side by side in one run (issue #7). Updates this machine's
section of docs/benchmarks.md.

    tools/benchmarks/perf.py [--bundle DIR ...] [--rounds N] [--out FILE] [--section NAME] [--no-train-bench]
    SMOKE=1 tools/benchmarks/perf.py          # seconds: demo data, 1 epoch, few queries

The page holds one section per machine class, each between
`<!-- perf.py:BEGIN NAME -->` and `<!-- perf.py:END NAME -->`; a run replaces only its own
section (NAME: --section, else derived from the CPU, e.g. `intel-xeon-avx512-amx`) and
leaves everything else in the file (the shared prose, other machines) as it is. A file or
section that does not exist yet is created (the section at the end of the file).

Without --bundle it trains the tiny preset on ../shared/data/snips (else the shipped demo
data), quantises it and exports a float and an int8 bundle. Any bundle written by
`tools export` can be added with --bundle (e.g. a MiniLM bundle); every variant of every
bundle is measured. Per round, interleaved: `device bench-latency` (end to end: tokenise +
tract + softmax, batch 1, one thread; also the symbolic plan), onnxruntime on the same
ONNX files with the same texts (Python `tokenizers` on the bundle's tokenizer.json, ids
checked equal to the device's; a bundle whose manifest has `ngrams` also gets its
`ngram_ids` input from tools/scripts/ngram_ids.py; intra/inter-op threads 1, sequential;
and all cores), and fastText. Then throughput, peak RSS and cold start of `device serve` (a
pty as the serial port, texts on stdin), bundle sizes, numpy's single-thread sgemm peak and
FLOPs per query, and training throughput of candle vs tools/benchmarks/torch_reference.py
(if torch is installed), interleaved. Figures are medians over rounds.

Needs: cargo, python3 with numpy, onnxruntime, onnx, tokenizers; optional fasttext-numpy2, torch.
"""
import argparse
import csv
import hashlib
import json
import os
import platform
import re
import select
import shutil
import statistics
import subprocess
import sys
import time
import tty
from pathlib import Path

import doc_section

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / "target/release/device"
# The same code, relinked by tools/benchmarks/code_layout.py (hot functions together, non-PIE).
LAID_OUT = ROOT / "target/release/device-laid-out"
TOOLS = ROOT / "target/release/tools"
SMOKE = os.environ.get("SMOKE", "0") == "1"


def log(*a):
    print("perf:", *a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    check = kw.pop("check", True)
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        sys.exit(f"perf: failed ({r.returncode}): {' '.join(str(c) for c in cmd)}\n{r.stderr[-2000:]}")
    return r


def jsonl(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def pct(v, p):
    s = sorted(v)
    return s[round((len(s) - 1) * p)] if s else None


# ---------------------------------------------------------------- machine

def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = open("/proc/cpuinfo").read()
        isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_int8", "asimddp", "fphp") if f" {f}" in flags]
    except OSError:
        isa = []
    mem = "?"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1))
        mem = f"{kb / 1048576:.0f} GB"
    except (OSError, AttributeError):
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "isa": isa, "mem": mem,
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "load": os.getloadavg(),
    }


def versions():
    v = {}
    for mod in ("numpy", "onnxruntime", "tokenizers", "fasttext", "torch"):
        try:
            m = __import__(mod)
            v[mod] = getattr(m, "__version__", "installed")
        except Exception:
            v[mod] = None
    v["rustc"] = run(["rustc", "--version"], check=False).stdout.strip()
    return v


def machine_class(mach):
    """The page section a run of this machine belongs to, e.g. intel-xeon-avx512-amx."""
    cpu = mach["cpu"].lower()
    vendor = ("intel-xeon" if "xeon" in cpu else "intel" if "intel" in cpu else
              "amd-epyc" if "epyc" in cpu else "amd" if "amd" in cpu else
              "arm" if platform.machine() in ("aarch64", "arm64") else "cpu")
    isa = mach["isa"]
    tier = ("avx512-amx" if "amx_int8" in isa else "avx512-vnni" if "avx512_vnni" in isa else
            "avx512" if "avx512f" in isa else "avx2" if "avx2" in isa else
            "dotprod" if "asimddp" in isa else "generic")
    return f"{vendor}-{tier}"


def section_markers(name):
    return doc_section.markers("perf.py", name)


def section_text(path, name):
    """The generated text of section NAME of the page at PATH (between its markers), or None."""
    if not Path(path).exists():
        return None
    begin, end = section_markers(name)
    text = Path(path).read_text()
    if begin not in text or end not in text:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0]


def write_section(path, name, body, title=None):
    """Replace this machine's section NAME of the page at PATH (doc_section.write_section)."""
    doc_section.write_section(path, "perf.py", name, body, title or name)


# ---------------------------------------------------------------- data and bundles

def data_files(work):
    shared = ROOT.parent / "shared/data/snips"
    if shared.is_dir() and not SMOKE:
        return "SNIPS", shared / "train.csv", shared / "test.csv"
    return "demo", ROOT / "models/demo/train.csv", ROOT / "models/demo/test.csv"


def make_bundles(work, train, epochs):
    ckpt, ckpt_q = work / "ckpt", work / "ckpt_q"
    bf, bq = work / "tiny-float", work / "tiny-int8"
    for d in (ckpt, ckpt_q, bf, bq):
        shutil.rmtree(d, ignore_errors=True)
    log(f"training tiny on {train} ({epochs} epochs)")
    run([TOOLS, "train", "--train", train, "--out", ckpt, "--epochs", epochs, "--quiet"])
    run([TOOLS, "quantize", "--model", ckpt, "--out", ckpt_q])
    run([TOOLS, "export", "--model", ckpt, "--out", bf])
    run([TOOLS, "export", "--model", ckpt_q, "--out", bq])
    return [bf, bq], ckpt


def manifest(b):
    return json.loads((Path(b) / "manifest.json").read_text())


def variants(b):
    m = manifest(b)
    if m.get("variants"):
        return [(v["name"], v["file"], v.get("external_data", [])) for v in m["variants"]]
    return [("float", "model.onnx", [])]


def bundle_label(b):
    m = manifest(b)
    return f"{m.get('preset') or '?'} ({Path(b).name})"


# ---------------------------------------------------------------- FLOPs and matmul peak

def flops_per_query(onnx_path, tokens):
    """2·(per-token weights)·S + 2·(classifier weights) + 4·S²·d per layer."""
    import onnx
    m = onnx.load(str(onnx_path), load_external_data=False)
    per_token = head = 0
    d = layers = 0
    lay = set()
    for t in m.graph.initializer:
        if len(t.dims) != 2:
            continue
        n = t.name
        size = t.dims[0] * t.dims[1]
        if n.startswith("embeddings.word_embeddings"):
            d = t.dims[1]
        elif n.startswith("encoder.layer.") or n.startswith("pooling."):
            per_token += size
            if n.startswith("encoder.layer."):
                lay.add(n.split(".")[2])
        elif n.startswith("classifier."):
            head += size
    layers = len(lay)
    return 2 * per_token * tokens + 2 * head + layers * 4 * tokens * tokens * d


def matmul_peak(threads):
    code = (
        "import numpy as np, time\n"
        "best=0\n"
        f"for n in {(256,) if SMOKE else (256, 512, 1024)}:\n"
        "  a=np.random.rand(n,n).astype(np.float32); b=np.random.rand(n,n).astype(np.float32)\n"
        "  a@b\n"
        "  for _ in range(3 if n<1024 else 2):\n"
        "    t=time.perf_counter(); r=5 if n<1024 else 2\n"
        "    for _ in range(r): a@b\n"
        "    best=max(best, 2*n**3*r/(time.perf_counter()-t))\n"
        "print(best/1e9)\n"
    )
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    return float(run([sys.executable, "-c", code], env=env).stdout.strip())


# ---------------------------------------------------------------- onnxruntime

ORT_CODE = r"""
import json, sys, time, numpy as np, onnxruntime as ort, tokenizers
spec = json.loads(sys.argv[1]); queries = json.load(open(spec["queries"]))
sys.path.insert(0, spec["scripts"])
out = []
for b in spec["bundles"]:
    tok = tokenizers.Tokenizer.from_file(b["dir"] + "/tokenizer.json")
    tok.enable_truncation(b["max_len"]); tok.no_padding()
    sets = queries[b["key"]]
    ng = b.get("ngrams")  # the manifest's {"buckets", "max"}: the model's third input
    if ng:
        from ngram_ids import ngram_ids
        grams = lambda t: ngram_ids(t, ng["buckets"], ng["max"])
        def ngram_row(t):
            g = grams(t); return np.array([g + [0] * (ng["max"] - len(g))], dtype=np.int64)
    for name, f in b["variants"]:
        for threads in spec["threads"]:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            try:
                s = ort.InferenceSession(b["dir"] + "/" + f, so, providers=["CPUExecutionProvider"])
            except Exception as e:
                out.append({"bundle": b["dir"], "variant": name, "threads": threads, "error": str(e)[:300]})
                continue
            for set_name, q in sets.items():
                texts, ids = q["texts"], q["ids"]
                same = [tok.encode(t).ids for t in texts] == ids
                # The device's n-gram ids, when its dump has them (unpadded or 0-padded rows).
                dev_grams = q.get("ngram_ids")
                grams_same = ([grams(t) for t in texts] == [[i for i in r if i] for r in dev_grams]
                              if ng and dev_grams is not None else None)
                def one(t):
                    i = np.array([tok.encode(t).ids], dtype=np.int64)
                    feed = {"input_ids": i, "attention_mask": np.ones_like(i)}
                    if ng:
                        feed["ngram_ids"] = ngram_row(t)
                    lo, _ = s.run(None, feed)
                    e = np.exp(lo[0] - lo[0].max()); return e / e.sum()
                for t in texts[:20]: one(t)
                e2e, model = [], []
                for t in texts:
                    t0 = time.perf_counter(); one(t); e2e.append(time.perf_counter() - t0)
                feeds = []
                for t, i in zip(texts, ids):
                    a = np.array([i], dtype=np.int64)
                    feeds.append({"input_ids": a, "attention_mask": np.ones_like(a)})
                    if ng:
                        feeds[-1]["ngram_ids"] = ngram_row(t)
                for feed in feeds:
                    t0 = time.perf_counter(); s.run(None, feed)
                    model.append(time.perf_counter() - t0)
                e2e.sort(); model.sort()
                out.append({"bundle": b["dir"], "variant": name, "threads": threads, "set": set_name,
                            "ids_match": same, "ngram_ids_match": grams_same,
                            "e2e_p50_us": e2e[len(e2e)//2]*1e6,
                            "e2e_p99_us": e2e[round((len(e2e)-1)*0.99)]*1e6,
                            "model_p50_us": model[len(model)//2]*1e6})
print(json.dumps(out))
"""


def ort_round(bundles, queries_file, threads):
    spec = {"queries": str(queries_file), "threads": threads, "scripts": str(ROOT / "tools/scripts"),
            "bundles": [{"dir": str(b), "key": str(b), "max_len": manifest(b)["max_len"],
                         "ngrams": manifest(b).get("ngrams"),
                         "variants": [(n, f) for n, f, _ in variants(b)]} for b in bundles]}
    r = run([sys.executable, "-c", ORT_CODE, json.dumps(spec)], check=False)
    if r.returncode != 0:
        log("onnxruntime failed:", r.stderr[-800:])
        return []
    return json.loads(r.stdout)


# ---------------------------------------------------------------- fastText

FT_CODE = r"""
import csv, json, sys, time, os, fasttext
train, test, qfile, work, smoke = sys.argv[1:6]
smoke = smoke == "1"
clean = lambda s: " ".join(s.replace("\n", " ").split())
with open(work + "/ft_train.txt", "w") as f:
    for r in csv.DictReader(open(train, newline="", encoding="utf-8")):
        f.write("__label__%s %s\n" % (r["label"].replace(" ", "_"), clean(r["text"]).lower()))
t0 = time.perf_counter()
m = fasttext.train_supervised(work + "/ft_train.txt", epoch=2 if smoke else 25, lr=0.5, wordNgrams=2, dim=50, bucket=200000, verbose=0, thread=1)
train_s = time.perf_counter() - t0
m.save_model(work + "/ft.bin"); size = os.path.getsize(work + "/ft.bin")
rows = list(csv.DictReader(open(test, newline="", encoding="utf-8")))
ok = sum(m.predict(clean(r["text"]).lower())[0][0] == "__label__" + r["label"].replace(" ", "_") for r in rows)
if not smoke:
    m.quantize(input=work + "/ft_train.txt", retrain=True, qnorm=True, cutoff=100000)
m.save_model(work + "/ft.ftz"); qsize = os.path.getsize(work + "/ft.ftz")
qok = sum(m.predict(clean(r["text"]).lower())[0][0] == "__label__" + r["label"].replace(" ", "_") for r in rows)
m = fasttext.load_model(work + "/ft.bin")
q = json.load(open(qfile)); sets = next(iter(q.values()))
lat = {}
for name, s in sets.items():
    for t in s["texts"][:20]: m.predict(clean(t).lower())
    v = []
    for _ in range(3):
        for t in s["texts"]:
            t0 = time.perf_counter(); m.predict(clean(t).lower()); v.append(time.perf_counter() - t0)
    v.sort(); lat[name] = (v[len(v)//2]*1e6, v[round((len(v)-1)*0.99)]*1e6)
print(json.dumps({"accuracy": ok/len(rows), "accuracy_ftz": qok/len(rows), "bytes": size, "bytes_ftz": qsize,
                  "train_s": train_s, "latency": lat, "test": len(rows)}))
"""


def fasttext_bench(train, test, queries_file, work):
    r = run([sys.executable, "-c", FT_CODE, train, test, queries_file, work, "1" if SMOKE else "0"],
            check=False)
    if r.returncode != 0:
        log("fastText skipped:", r.stderr.strip().splitlines()[-1:] if r.stderr else "")
        return None
    return json.loads(r.stdout)


# ---------------------------------------------------------------- serve: RSS and cold start

def device_sources():
    """What the device binary is built from (git trees of device/, protocol/, Cargo.lock and
    Cargo.toml, plus uncommitted changes there): a laid-out binary is measured only while
    this is unchanged since tools/benchmarks/code_layout.py made it."""
    paths = ["device", "protocol", "Cargo.lock", "Cargo.toml"]
    trees = subprocess.run(["git", "rev-parse"] + [f"HEAD:{x}" for x in paths], cwd=ROOT,
                           capture_output=True, text=True).stdout.split()
    dirty = subprocess.run(["git", "diff", "HEAD", "--"] + paths, cwd=ROOT, capture_output=True, text=True).stdout
    return {"trees": trees, "uncommitted": len(dirty), "diff_hash": hashlib.sha256(dirty.encode()).hexdigest()[:16]}


def laid_out_current():
    meta = LAID_OUT.with_name(LAID_OUT.name + ".json")
    if not (LAID_OUT.exists() and meta.exists()):
        return False
    if json.loads(meta.read_text()).get("sources") != device_sources():
        log(f"{LAID_OUT} was built from other sources: rerun tools/benchmarks/code_layout.py to measure it")
        return False
    return True


def serve_probes(bundles, texts, device=None):
    """serve_probe of every variant of every bundle (median of 3), keyed "BUNDLE|VARIANT"."""
    out = {}
    for b in bundles:
        for name, _, _ in variants(b):
            runs = [serve_probe(b, texts, name, device) for _ in range(1 if SMOKE else 3)]
            out[f"{b}|{name}"] = {k: med([x[k] for x in runs]) for k in runs[0]}
    return out


def serve_cmd(device, bundle, port, variant=None):
    """`device serve` on `bundle`, answering texts from stdin over the serial `port`."""
    cmd = [device, "serve", "--bundle", bundle, "--allow-unsigned", "--serial", port, "--input", "-"]
    return [str(c) for c in cmd + (["--variant", variant] if variant else [])]


def frames_in(buf):
    """Complete frames in what the port gave: COBS-encoded, each ending with 0x00 (a lone
    0x00 resyncs at start)."""
    return sum(1 for f in buf.split(b"\x00")[:-1] if f)


def serve_probe(bundle, texts, variant=None, device=None):
    """Peak RSS of `device serve` after answering `texts`, and process start -> first answer."""
    master, slave = os.openpty()
    tty.setraw(slave)
    t0 = time.perf_counter()
    p = subprocess.Popen(serve_cmd(device or DEVICE, bundle, os.ttyname(slave), variant),
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write((texts[0] + "\n").encode())
    p.stdin.flush()
    buf, first = b"", None
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            buf += os.read(master, 65536)
            if frames_in(buf):
                first = time.perf_counter() - t0
                break
    frames = 0
    if first is not None:
        p.stdin.write("".join(t + "\n" for t in texts).encode())
        p.stdin.flush()
        want = len(texts)
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                buf += os.read(master, 65536)
                frames = frames_in(buf) - 1
                if frames >= want:
                    break
    status = open(f"/proc/{p.pid}/status").read()
    field = lambda k: int(re.search(rf"{k}:\s+(\d+)", status).group(1)) if re.search(rf"{k}:", status) else None
    res = {"vmhwm_kb": field("VmHWM"), "rss_anon_kb": field("RssAnon"), "rss_file_kb": field("RssFile"),
           "cold_start_ms": first * 1e3 if first else None, "answered": frames}
    p.terminate()
    p.wait(timeout=10)
    os.close(master)
    os.close(slave)
    return res


def tiny_alone(a, bundles, out_md, section):
    """Headline and command of the tiny model benchmarked on its own on this machine (section
    SECTION-tiny-alone of the same page), for a run of several bundles; else None."""
    if len(bundles) < 2 or section.endswith("-tiny-alone"):
        return None
    text = section_text(out_md, section + "-tiny-alone")
    if not text or "### Headline" not in text:
        return None
    run_line = re.search(r"Run: (`[^`]*`)", text)
    return {"headline": text.split("### Headline", 1)[1].strip().split("\n\n")[0],
            "run": run_line.group(1) if run_line else ""}


def serve_of(raw, bundle, variant):
    """The serve probe of `variant` of `bundle` (runs before per-variant probing keyed by bundle)."""
    return raw["serve"].get(f"{bundle}|{variant}")


def classify_probe(bundle, variant, text):
    """`device classify --variant V TEXT`: max RSS and wall time (process start to exit)."""
    t0 = time.perf_counter()
    r = run(["/usr/bin/time", "-f", "MAXRSS %M", DEVICE, "classify", "--bundle", bundle,
             "--allow-unsigned", "--variant", variant, text], check=False)
    wall = time.perf_counter() - t0
    m = re.search(r"MAXRSS (\d+)", r.stderr)
    return {"maxrss_kb": int(m.group(1)) if m else None, "wall_ms": wall * 1e3}


# ---------------------------------------------------------------- training throughput

def candle_train(train, work, epochs, threads):
    out = work / f"train-candle-{threads}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    run([TOOLS, "--threads", threads, "train", "--train", train, "--out", out, "--epochs", epochs,
         "--patience", 99, "--ema-decay", 0, "--quiet"])
    wall = time.perf_counter() - t0
    rows = list(csv.DictReader(open(out / "training_log.csv")))
    return {"examples_per_s": [float(r["examples_per_s"]) for r in rows],
            "val_accuracy": [float(r["val_accuracy"]) for r in rows],
            "seconds": [float(r["seconds"]) for r in rows], "wall_s": wall}


def torch_train(train, tokenizer, work, epochs, threads):
    r = run([sys.executable, ROOT / "tools/benchmarks/torch_reference.py", "--train", train,
             "--tokenizer", tokenizer, "--epochs", epochs, "--threads", threads], check=False)
    if r.returncode != 0:
        log("torch reference failed:", r.stderr[-500:])
        return None
    rows = jsonl(r.stdout)
    return {"examples_per_s": [x["examples_per_s"] for x in rows],
            "val_accuracy": [x["val_accuracy"] for x in rows],
            "seconds": [x["seconds"] for x in rows], "torch": rows[0]["torch"]}


# ---------------------------------------------------------------- main

def train_bench(train, work, tokjson, epochs, rounds):
    """Training throughput, candle vs PyTorch, 1 thread, interleaved rounds."""
    res = {"candle": [], "torch": []}
    have_torch = versions()["torch"] is not None
    for r in range(rounds):
        log(f"training round {r + 1}/{rounds}")
        res["candle"].append(candle_train(train, work, epochs, 1))
        if have_torch:
            t = torch_train(train, tokjson, work, epochs, 1)
            if t:
                res["torch"].append(t)
    return res


def fmt(x, nd=0):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", action="append", default=[], help="bundle directory (repeatable)")
    ap.add_argument("--rounds", type=int, default=2 if SMOKE else 5)
    ap.add_argument("--queries", type=int, default=20 if SMOKE else 200)
    ap.add_argument("--epochs", type=int, default=1 if SMOKE else 8, help="epochs when training the bundles")
    ap.add_argument("--train-epochs", type=int, default=1 if SMOKE else 2, help="epochs per training-speed run")
    ap.add_argument("--train-rounds", type=int, default=1 if SMOKE else 2)
    ap.add_argument("--no-train-bench", action="store_true")
    ap.add_argument("--work", default=str(ROOT / ("runs/perf-smoke" if SMOKE else "runs/perf")))
    ap.add_argument("--out", default=None, help="page to update (default: docs/benchmarks.md; smoke: WORK/benchmarks.md)")
    ap.add_argument("--section", default=None,
                    help="the page section this run replaces (default: the machine class, e.g. intel-xeon-avx512-amx; "
                         "a run of the tiny bundle alone: CLASS-tiny-alone)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--laid-out-only", action="store_true",
                    help="measure only `device serve` of target/release/device-laid-out (tools/benchmarks/"
                         "code_layout.py) on the bundles and texts of WORK/perf.json, add it there and rewrite "
                         "this machine's section")
    ap.add_argument("--train-only", action="store_true",
                    help="re-measure only the training throughput (candle vs PyTorch) on the data of WORK/perf.json, "
                         "replace it there and rewrite this machine's section (after a change to training)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite this machine's section from WORK/perf.json of the last run (no measuring)")
    a = ap.parse_args()
    if a.report_only or a.laid_out_only or a.train_only:
        raw = json.loads((Path(a.work) / "perf.json").read_text())
        if a.train_only:
            if not a.no_build:
                log("building (release)")
                run(["cargo", "build", "--release", "-p", "device", "-p", "tools"], cwd=ROOT)
            raw["train"] = train_bench(Path(raw["train_file"]), Path(a.work), Path(raw["bundles"][0]) / "tokenizer.json",
                                       raw["args"]["train_epochs"], raw["args"]["train_rounds"])
            raw["train_when"] = (f"measured after the run by `perf.py --train-only`, load average "
                                 f"{os.getloadavg()[0]:.1f}")
            (Path(a.work) / "perf.json").write_text(json.dumps(raw, indent=1, default=str))
        if a.laid_out_only:
            if not laid_out_current():
                sys.exit("perf: no current target/release/device-laid-out: run tools/benchmarks/code_layout.py")
            texts = [r["text"] for r in csv.DictReader(open(raw["test_file"], newline="", encoding="utf-8"))][:200]
            raw["serve_laid_out"] = serve_probes([Path(b) for b in raw["bundles"]], texts, LAID_OUT)
            raw["code_layout"] = code_layout_fragment()
            raw["serve_laid_out_when"] = (f"measured after the run by `perf.py --laid-out-only`, load average "
                                          f"{os.getloadavg()[0]:.1f}")
            (Path(a.work) / "perf.json").write_text(json.dumps(raw, indent=1))
        a.rounds, a.train_epochs, a.train_rounds = raw["args"]["rounds"], raw["args"]["train_epochs"], raw["args"]["train_rounds"]
        bundles = [Path(b) for b in raw["bundles"]]
        split = lambda d: {tuple(k.split("|", 1)): v for k, v in d.items()}
        out_md = Path(a.out) if a.out else ROOT / "docs/benchmarks.md"
        section = a.section or raw.get("section") or machine_class(raw["machine"])
        write_section(out_md, section, report(a, raw, bundles, split(raw["classify"]), split(raw["sizes"]),
                                              raw["train_file"], raw["test_file"], Path(a.work) / "queries.json",
                                              out_md, section), section_title(raw["machine"], section))
        log(f"wrote section {section} of {out_md}")
        return 0
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    out_md = Path(a.out) if a.out else (work / "benchmarks.md" if SMOKE else ROOT / "docs/benchmarks.md")
    mach = machine()
    started = time.time()
    if not a.no_build:
        log("building (release)")
        run(["cargo", "build", "--release", "-p", "device", "-p", "tools"], cwd=ROOT)
    dname, train, test = data_files(work)
    ckpt = None
    bundles = [Path(b).resolve() for b in a.bundle]
    if not bundles:
        bundles, ckpt = make_bundles(work, train, a.epochs)
    nproc = os.cpu_count() or 1
    qfile = work / "queries.json"
    res = {"device": [], "ort": [], "throughput": []}

    # -- latency: device and onnxruntime, interleaved rounds
    dev_cmd = [DEVICE, "bench-latency", "--texts", test, "--queries", a.queries, "--rounds", 1,
               "--modes", "buckets,fixed,symbolic,baseline"]
    for b in bundles:
        dev_cmd += ["--bundle", b]
    log("checking fixed-length plans against the symbolic plan")
    # A difference over the check's tolerance exits non-zero after every bundle's row is
    # printed: the rows go in the report (and perf.py exits 1 at the end), the timing goes on.
    checked = run(dev_cmd[:2] + ["--check", "--texts", test, "--queries", a.queries]
                  + sum((["--bundle", b] for b in bundles), []), check=False)
    check = [c for c in jsonl(checked.stdout) if c.get("kind") == "check"]
    if checked.returncode != 0 and not check:
        sys.exit(f"perf: device bench-latency --check failed ({checked.returncode}):\n"
                 f"{checked.stderr[-2000:]}")
    for r in range(a.rounds):
        log(f"latency round {r + 1}/{a.rounds}")
        rows = jsonl(run(dev_cmd + ["--dump-queries", qfile]).stdout)
        for x in rows:
            x["round"] = r
        res["device"] += rows
        threads = [1] if nproc == 1 else [1, nproc]
        for x in ort_round(bundles, qfile, threads):
            x["round"] = r
            res["ort"].append(x)

    # -- fastText on the same data
    log("fastText")
    ft = fasttext_bench(train, test, qfile, work)

    # -- throughput: every query of both sets, in-process, 1 and all threads
    log("throughput")
    for t in [nproc] if SMOKE else sorted({1, nproc}):
        tp = jsonl(run([DEVICE, "bench-latency", "--texts", test, "--queries", a.queries, "--rounds",
                        max(1, a.rounds // 2), "--throughput-threads", t, "--modes", "buckets,baseline"]
                       + sum((["--bundle", b] for b in bundles), [])).stdout)
        res["throughput"] += [x for x in tp if x["kind"] == "throughput"]

    # -- serve RSS / cold start, classify RSS per variant, sizes
    log("serve RSS and cold start")
    texts = [r["text"] for r in csv.DictReader(open(test, newline="", encoding="utf-8"))][:200]
    serve = serve_probes(bundles, texts)
    serve_laid_out = serve_probes(bundles, texts, LAID_OUT) if laid_out_current() else {}
    classify, sizes = {}, {}
    for b in bundles:
        for name, f, ext in variants(b):
            cs = [classify_probe(b, name, texts[0]) for _ in range(1 if SMOKE else 3)]
            classify[(str(b), name)] = {k: med([x[k] for x in cs]) for k in cs[0]}
            files = [f, *ext, "tokenizer.json", "manifest.json"]
            sizes[(str(b), name)] = sum((Path(b) / x).stat().st_size for x in files)
        sizes[(str(b), "*")] = sum(p.stat().st_size for p in Path(b).iterdir() if p.is_file())

    # -- matmul peak and FLOPs
    log("matmul peak")
    peak1 = med([matmul_peak(1) for _ in range(1 if SMOKE else 3)])
    peakn = matmul_peak(nproc) if nproc > 1 else peak1

    # -- training throughput: candle vs PyTorch, interleaved
    train_res = {"candle": [], "torch": []}
    if not a.no_train_bench:
        tokjson = (ckpt / "tokenizer.json") if ckpt else (bundles[0] / "tokenizer.json")
        train_res = train_bench(train, work, tokjson, a.train_epochs, a.train_rounds)

    mach["load_after"] = os.getloadavg()
    raw = {"machine": mach, "versions": versions(), "data": dname, "check": check, "res": res, "ft": ft,
           "serve": serve, "serve_laid_out": serve_laid_out, "classify": {f"{k[0]}|{k[1]}": v for k, v in classify.items()},
           "sizes": {f"{k[0]}|{k[1]}": v for k, v in sizes.items()}, "peak": [peak1, peakn],
           "train": train_res, "seconds": time.time() - started,
           "bundles": [str(b) for b in bundles], "train_file": str(train), "test_file": str(test),
           "args": {"rounds": a.rounds, "train_epochs": a.train_epochs, "train_rounds": a.train_rounds},
           "code_layout": code_layout_fragment() if serve_laid_out else None}
    section = a.section or machine_class(mach)
    raw["section"] = section
    (work / "perf.json").write_text(json.dumps(raw, indent=1, default=str))
    md = report(a, raw, bundles, classify, sizes, train, test, qfile, out_md, section)
    write_section(out_md, section, md, section_title(mach, section))
    log(f"wrote section {section} of {out_md} ({time.time() - started:.0f} s)")
    bad = [c for c in check if not c.get("ok")]
    if bad:
        log("fixed-length plans differ from the symbolic plan:", bad)
        return 1
    return 0


def report(a, raw, bundles, classify, sizes, train, test, qfile, out_md, section):
    """This machine's section of the page: its tables only. What the columns mean, how the engine
    works and how to reproduce are written once in the page around the sections."""
    mach, res = raw["machine"], raw["res"]
    peak1, peakn = raw["peak"]
    nproc = mach["cores"]
    queries = json.load(open(qfile))
    L = []
    w = L.append
    w("Written by `tools/benchmarks/perf.py`: one run, the contenders interleaved round by round, "
      "medians over rounds.\n")
    w(f"Machine: {mach['cpu']}, {nproc} cores ({', '.join(mach['isa'])}), {mach['mem']}, {mach['os']}; "
      f"load average {mach['load'][0]:.1f} at the start, {mach['load_after'][0]:.1f} at the end "
      + ("(other jobs were running on the same cores)" if max(mach['load'][0], mach['load_after'][0]) > 1.5
         else "(1.0 = the benchmark itself)")
      + ". Versions: "
      + ", ".join(f"{k} {v}" for k, v in raw["versions"].items() if v) + ".\n")
    w(f"Data: {raw['data']} ({Path(test).name} texts as queries; short = ≤ 16 tokens incl. [CLS]/[SEP], "
      f"long = texts joined to 64 tokens). Run: `tools/benchmarks/perf.py"
      + "".join(f" --bundle {os.path.relpath(b, ROOT)}" for b in bundles)
      + f" --rounds {a.rounds}" + (" --no-train-bench" if a.no_train_bench else "")
      + (f" --out {os.path.relpath(a.out, ROOT)}" if a.out else "")
      + (f" --section {section}" if section != machine_class(mach) else "")
      + f"` ({raw['seconds'] / 60:.0f} min).\n")

    # headline + latency
    def dev(b, v, s, mode="buckets", key="e2e_p50_us"):
        return med([x[key] for x in res["device"] if x["bundle"] == str(b) and x["variant"] == v
                    and x["set"] == s and x["mode"] == mode])

    def ort(b, v, s, t, key="e2e_p50_us"):
        return med([x.get(key) for x in res["ort"] if x["bundle"] == str(b) and x["variant"] == v
                    and x.get("set") == s and x["threads"] == t])

    w("### End-to-end latency per query (batch 1)\n")
    w("p50 / p99 in µs; columns as described in \"How to read the tables\".\n")
    w("| bundle | variant | set (mean tokens) | device e2e p50 / p99 | device model p50 | tokenizer p50: fast path / library | before: e2e p50 (symbolic plan + library tokenizer) | before / now | onnxruntime e2e p50 / p99 (1 thread) | ort model p50 | device / ort e2e | device / ort model | ort e2e p50, " + str(nproc) + " threads |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    headline = None
    for b in bundles:
        for v, _, _ in variants(b):
            for s in ("short", "long"):
                toks = med([x["mean_tokens"] for x in res["device"] if x["bundle"] == str(b) and x["set"] == s])
                d50, d99 = dev(b, v, s), dev(b, v, s, key="e2e_p99_us")
                o50, o99 = ort(b, v, s, 1), ort(b, v, s, 1, "e2e_p99_us")
                dm, om = dev(b, v, s, key="model_p50_us"), ort(b, v, s, 1, "model_p50_us")
                base = dev(b, v, s, "baseline")
                row = (f"| {bundle_label(b)} | {v} | {s} ({fmt(toks, 1)}) | {fmt(d50)} / {fmt(d99)} | {fmt(dm)} | "
                       f"{fmt(dev(b, v, s, key='tokenize_p50_us'), 1)} / {fmt(dev(b, v, s, key='tokenize_library_p50_us'), 1)} | "
                       f"{fmt(base)} | {fmt(base / d50 if base and d50 else None, 2)}x | "
                       f"{fmt(o50)} / {fmt(o99)} | {fmt(om)} | "
                       f"{fmt(d50 / o50 if d50 and o50 else None, 2)}x | {fmt(dm / om if dm and om else None, 2)}x | "
                       f"{fmt(ort(b, v, s, nproc)) if nproc > 1 else '–'} |")
                w(row)
                if headline is None and s == "short":
                    headline = (bundle_label(b), v, d50, o50, dm, om)
    w("")
    ids_ok = all(x.get("ids_match", True) for x in res["ort"] if "set" in x)
    w(f"Token ids of Python `tokenizers` equal the device's for every query: {'yes' if ids_ok else 'NO'}.\n")
    grams = [x["ngram_ids_match"] for x in res["ort"] if x.get("ngram_ids_match") is not None]
    if grams:
        w(f"N-gram ids of `tools/scripts/ngram_ids.py` equal the device's for every query: "
          f"{'yes' if all(grams) else 'NO'}.\n")
    per_round = {}
    for x in res["device"]:
        if x["mode"] == "buckets":
            per_round.setdefault((x["bundle"], x["variant"], x["set"]), []).append(round(x["e2e_p50_us"]))
    w("Device e2e p50 per round (µs): " + "; ".join(
        f"{Path(k[0]).name} {k[1]} {k[2]}: {v}" for k, v in per_round.items()) + ".\n")

    w("### Which plan serves a single text: the race\n")
    w("Device e2e p50 (µs) in the same rounds.\n")
    w("| bundle | variant | set | fixed | symbolic | default (race) | routes |")
    w("|---|---|---|---|---|---|---|")

    def routes(b, v, s):
        rows = [x for x in res["device"] if x["bundle"] == str(b) and x["variant"] == v
                and x["set"] == s and x["mode"] == "buckets" and x.get("routes")]
        if not rows:
            return "–"
        return ", ".join(f"{n} → {'–' if f is None else f}" for n, f in rows[-1]["routes"])

    for b in bundles:
        for name, _, _ in variants(b):
            for s in ("short", "long"):
                w(f"| {bundle_label(b)} | {name} | {s} | {fmt(dev(b, name, s, mode='fixed'))} | "
                  f"{fmt(dev(b, name, s, mode='symbolic'))} | {fmt(dev(b, name, s))} | "
                  f"{routes(b, name, s)} |")
    w("")

    w("### Fixed-length plans vs the symbolic plan\n")
    w("`device bench-latency --check` on every test text and the long set.\n")
    w("| bundle | variant | texts | labels differ (of them near-ties) | max |Δp| | max |Δα| | tokenizer fast path: texts differing from the library | within the check's tolerance |")
    w("|---|---|---|---|---|---|---|---|")
    for c in raw["check"]:
        ties = c.get("labels_differ_at_near_ties")
        differ = f"{c['labels_differ']}" + (f" ({ties})" if ties else "")
        ok = "yes" if c.get("ok", True) else "**no**"
        w(f"| {Path(c['bundle']).name} | {c['variant']} | {c['texts']} | {differ} | "
          f"{c['max_prob_diff']:.1e} | {c['max_attention_diff']:.1e} | {c.get('tokens_differ', '–')} | {ok} |")
    w("")

    w("### The hardware limit: FLOPs per query over the measured matmul peak\n")
    w(f"numpy (OpenBLAS) sgemm, square 256–1024: **{peak1:.0f} GFLOP/s on 1 thread**, {peakn:.0f} on {nproc}.\n")
    w("| bundle | tokens | MFLOP / query | time at peak (1 thread) | device model p50 | share of peak |")
    w("|---|---|---|---|---|---|")
    for b in bundles:
        v0, f0, _ = variants(b)[0]
        for s in ("short", "long"):
            toks = med([len(i) for i in queries[str(b)][s]["ids"]])
            fl = flops_per_query(Path(b) / f0, toks)
            limit = fl / (peak1 * 1e9) * 1e6
            dm = dev(b, v0, s, key="model_p50_us")
            w(f"| {bundle_label(b)} ({v0}) | {toks} | {fl / 1e6:.1f} | {limit:.0f} µs | {fmt(dm)} µs | "
              f"{fmt(100 * limit / dm if dm else None)} % |")
    w("")

    w("### fastText on the same data\n")
    ft = raw["ft"]
    if ft:
        w(f"Trained on {Path(train).name}; test accuracy over {ft['test']} texts.\n")
        w("| model | accuracy | size | short p50 / p99 | long p50 / p99 | train time |")
        w("|---|---|---|---|---|---|")
        w(f"| fastText .bin | {ft['accuracy']:.4f} | {ft['bytes'] / 1e6:.1f} MB | "
          f"{ft['latency']['short'][0]:.0f} / {ft['latency']['short'][1]:.0f} µs | "
          f"{ft['latency']['long'][0]:.0f} / {ft['latency']['long'][1]:.0f} µs | {ft['train_s']:.1f} s |")
        w(f"| fastText .ftz (quantised) | {ft['accuracy_ftz']:.4f} | {ft['bytes_ftz'] / 1e6:.2f} MB | | | |")
        w("")
    else:
        w("fastText not measured (`pip install fasttext-numpy2`).\n")

    w("### Throughput (file of queries, in process)\n")
    w("Queries/s.\n")
    w("| bundle | variant | engine | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in sorted({1, nproc})) + " |")
    w("|---|---|---|" + "---|" * len({1, nproc}))
    for b in bundles:
        for v, _, _ in variants(b):
            for mode, label in (("buckets", "now"), ("baseline", "before")):
                cells = []
                for t in sorted({1, nproc}):
                    q = [x["queries_per_s"] for x in res["throughput"] if x["bundle"] == str(b)
                         and x["variant"] == v and x["threads"] == t and x["mode"] == mode]
                    cells.append(fmt(med(q)))
                w(f"| {bundle_label(b)} | {v} | {label} | " + " | ".join(cells) + " |")
    w("")

    w("### Memory, cold start, size\n")
    w("`device serve`, 200 texts answered; `device classify`, one text.\n")
    w("| bundle | variant | bundle bytes (variant's files) | serve peak RSS | anon / file | serve cold start | classify max RSS | classify wall |")
    w("|---|---|---|---|---|---|---|---|")
    for b in bundles:
        for v, _, _ in variants(b):
            sv = serve_of(raw, b, v)
            c = classify[(str(b), v)]
            w(f"| {bundle_label(b)} | {v} | {sizes[(str(b), v)]:,} | "
              + (f"{sv['vmhwm_kb'] / 1024:.1f} MB | {sv['rss_anon_kb'] / 1024:.1f} / {sv['rss_file_kb'] / 1024:.1f} MB | "
                 f"{fmt(sv['cold_start_ms'])} ms" if sv else "(not measured) | | ")
              + f" | {c['maxrss_kb'] / 1024:.1f} MB | {c['wall_ms']:.0f} ms |")
    w("")
    laid = raw.get("serve_laid_out") or {}
    if laid:
        w("The same `device serve` probe with the laid-out binary (`target/release/device-laid-out`, "
          "made by tools/benchmarks/code_layout.py from the same sources; "
          f"{raw.get('serve_laid_out_when') or 'same run'}):\n")
        w("| bundle | variant | serve peak RSS | anon / file | serve cold start |")
        w("|---|---|---|---|---|")
        for b in bundles:
            for v, _, _ in variants(b):
                lo = laid.get(f"{b}|{v}")
                if lo:
                    w(f"| {bundle_label(b)} | {v} | {lo['vmhwm_kb'] / 1024:.1f} MB | "
                      f"{lo['rss_anon_kb'] / 1024:.1f} / {lo['rss_file_kb'] / 1024:.1f} MB | {fmt(lo['cold_start_ms'])} ms |")
        w("")

    w("### Training throughput: candle vs PyTorch (tiny preset)\n")
    tr = raw["train"]
    if tr["candle"]:
        last = lambda runs, k: med([r[k][-1] for r in runs])
        c_eps = last(tr["candle"], "examples_per_s")
        w(f"`tools --threads 1 train --train {Path(train).name} --epochs {a.train_epochs} --ema-decay 0` vs "
          f"`tools/benchmarks/torch_reference.py --threads 1 --epochs {a.train_epochs}` (same architecture and recipe, "
          f"batch 32, length-bucketed), {a.train_rounds} interleaved rounds, examples/s of the last epoch"
          + (f" ({raw['train_when']})" if raw.get("train_when") else "") + ":\n")
        w("| trainer | examples/s (1 thread) | val accuracy after the run | epoch seconds |")
        w("|---|---|---|---|")
        w(f"| candle (`tools train`) | {fmt(c_eps)} | {last(tr['candle'], 'val_accuracy'):.4f} | "
          f"{last(tr['candle'], 'seconds'):.1f} |")
        if tr["torch"]:
            t_eps = last(tr["torch"], "examples_per_s")
            w(f"| PyTorch {tr['torch'][0]['torch']} (reference) | {fmt(t_eps)} | "
              f"{last(tr['torch'], 'val_accuracy'):.4f} | {last(tr['torch'], 'seconds'):.1f} |")
            w(f"\ncandle / PyTorch: **{c_eps / t_eps:.2f}x** examples/s.\n")
        else:
            w("\nPyTorch not installed here: reference not run.\n")
    else:
        w("Not run (--no-train-bench).\n")
    if headline:
        bl, v, d50, o50, dm, om = headline
        w("### Headline\n")
        w(f"{bl} {v}, batch 1, 1 thread, ≤ 16 tokens: device end to end p50 **{fmt(d50)} µs**, onnxruntime "
          f"on the same ONNX file {fmt(o50)} µs (**{d50 / o50:.2f}x**); model alone {fmt(dm)} vs {fmt(om)} µs "
          f"({dm / om:.2f}x).\n")
        w("### Issue #7 targets in this run\n")
        w("| target | this run | met |")
        w("|---|---|---|")
        # Every variant of the tiny preset (float and int8 bundles), short queries, same rounds.
        tiny_b = [b for b in bundles if (manifest(b).get("preset") or "").lower() == "tiny"]
        tiny_short = [(dev(b, tv, "short"), tv, b) for b in tiny_b for tv, _, _ in variants(b)]
        tiny_short = sorted(x for x in tiny_short if x[0])
        fastest = tiny_short[0] if tiny_short else (d50, v, None)
        rest = [f"{tv} ({bundle_label(b).split('(')[-1].rstrip(')')}) {fmt(d)} µs" for d, tv, b in tiny_short[1:]]
        w(f"| tiny, batch 1, 1 thread, ≤ 16 tokens: e2e p50 ≤ 100 µs | fastest variant: {fastest[1]} "
          f"**{fmt(fastest[0])} µs**" + (f"; {', '.join(rest)}" if rest else "")
          + f" (load average {mach['load'][0]:.0f} on 2 cores; onnxruntime needed {fmt(o50)} µs for {v} in the "
          f"same rounds) | {'yes (' + fastest[1] + ')' if fastest[0] <= 100 else 'no'} |")
        alone = tiny_alone(a, bundles, out_md, section)
        m = re.search(r"\(\*\*([0-9.]+)x\*\*\)", alone["headline"]) if alone else None
        alone_ratio = float(m.group(1)) if m else None
        met = d50 <= o50 and (alone_ratio is None or alone_ratio <= 1.0)
        others = []
        for b in tiny_b:
            for tv, _, _ in variants(b):
                d, o = dev(b, tv, "short"), ort(b, tv, "short", 1)
                if d and o and (bundle_label(b), tv) != (bl, v):
                    others.append(f"{tv} ({bundle_label(b).split('(')[-1].rstrip(')')}) {d / o:.2f}x")
        w(f"| same, ≤ 1.0x onnxruntime on the same ONNX file | {v} e2e {d50 / o50:.2f}x, model alone {dm / om:.2f}x"
          + (f"; measured alone (below): e2e {alone_ratio:.2f}x" if alone_ratio is not None else "")
          + (f"; the other tiny variants, e2e: {', '.join(others)}" if others else "")
          + f" | {'yes' if met else 'no'} (float) |")
        mini = [b for b in bundles if "minilm" in str(b).lower() or (manifest(b).get("preset") or "").lower().startswith("minilm")]
        if mini:
            cells, met = [], True
            for b in mini:
                for v, _, _ in variants(b):
                    rs = []
                    for st in ("short", "long"):
                        d, o = dev(b, v, st), ort(b, v, st, 1)
                        if d and o:
                            rs.append(f"{st} {d / o:.2f}x")
                            met = met and d <= o
                    cells.append(f"{v}: " + ", ".join(rs))
            w(f"| MiniLM-L6 float and int8 ≤ 1.0x onnxruntime (e2e p50, 1 thread) | {'; '.join(cells)} "
              "(int8-compute on the same file; onnxruntime runs the element-wise form of earlier exports "
              "~1.5x faster: docs/performance-notes.md) | "
              f"{'yes' if met else 'no'} |")
        else:
            w("| MiniLM-L6 float and int8 ≤ 1.0x onnxruntime | not measured: no MiniLM bundle (add it with --bundle) | – |")
        for preset, limit in [("tiny", 20), ("minilm", 120)]:
            int8 = [(b, v, serve_of(raw, b, v)) for b in bundles for v, _, _ in variants(b)
                    if (manifest(b).get("preset") or "").lower().split(":")[-1].startswith(preset)
                    and v.startswith(("weights-int8", "int8-compute")) and serve_of(raw, b, v)]
            if int8:
                b, v, sv = min(int8, key=lambda x: x[2]["vmhwm_kb"])
                cell = (f"{sv['vmhwm_kb'] / 1024:.1f} MB with {v} ({sv['rss_anon_kb'] / 1024:.1f} MB anonymous + "
                        f"{sv['rss_file_kb'] / 1024:.1f} MB of the binary's code pages)")
                best = sv["vmhwm_kb"]
                lo = (raw.get("serve_laid_out") or {}).get(f"{b}|{v}")
                if lo:
                    when = raw.get("serve_laid_out_when") or "same run"
                    cell += (f"; laid-out binary (code_layout.py; {when}): **{lo['vmhwm_kb'] / 1024:.1f} MB** "
                             f"({lo['rss_anon_kb'] / 1024:.1f} + {lo['rss_file_kb'] / 1024:.1f} MB)")
                    best = min(best, lo["vmhwm_kb"])
                w(f"| `device serve` peak RSS ≤ {limit} MB, {preset} int8 | {cell} | "
                  f"{'yes' if best <= limit * 1024 else 'no'} |")
        if tr["candle"] and tr["torch"]:
            ratio = last(tr["candle"], "examples_per_s") / last(tr["torch"], "examples_per_s")
            w(f"| candle training ≥ 1.0x PyTorch examples/s (1 thread, batch 32) | {ratio:.2f}x | "
              f"{'yes' if ratio >= 1 else 'no'} |")
        w("")
        if alone:
            w(f"The tiny model measured alone on this machine ({alone['run']}): {alone['headline']}\n")
    w("### Code layout of the device binary\n")
    cl = raw.get("code_layout")
    if cl:
        w(cl.split("\n", 1)[1].strip() + "\n" if cl.startswith("#") else cl.strip() + "\n")
    else:
        w("Not measured in this run (`tools/benchmarks/code_layout.py --bundle B`, then "
          "`perf.py --laid-out-only`).\n")
    return "\n".join(L) + "\n"


def section_title(mach, section):
    """The heading of a new section: the machine as /proc/cpuinfo names it."""
    alone = " (the tiny model alone)" if section.endswith("-tiny-alone") else ""
    return f"{mach['cpu']}, {', '.join(mach['isa'])}{alone}"


def code_layout_fragment():
    """The table tools/benchmarks/code_layout.py wrote beside the laid-out binary, if any."""
    md = LAID_OUT.with_name(LAID_OUT.name + ".md")
    return md.read_text() if md.exists() else None





if __name__ == "__main__":
    sys.exit(main())
