#!/usr/bin/env python3
"""Profile-guided code layout of the device binary: less resident code in `device serve`.

    tools/benchmarks/code_layout.py --bundle DIR [--variant V ...] [--fault-rounds N] [--rounds N]

Why: the release binary's `.text` is 22.5 MB, but `device serve` runs only ~3 MB of it. The
kernel maps code in 64 KB fault-around blocks (and whole large folios), so the few functions
serve needs, scattered over the whole text, make ~20 MB of it resident (docs/benchmarks.md,
"Memory of device serve"). Placing the functions serve runs next to each other, and linking
without position independence (no 1.8 MB `.rela.dyn` read at start and no copy-on-write of the
1.1 MB `.data.rel.ro` it patches), leaves only the code that runs resident.

Steps:
1. `cargo build --release -p device` (the plain binary, kept as the comparison).
2. `device serve` on the shipped demo texts under `valgrind --tool=callgrind`: the functions it
   runs (the profile never sees the measured texts).
3. Order file: the `.text.SYMBOL` sections of those functions (also their `.text.unlikely.` and
   `.text.startup.` forms: LLVM puts `#[cold]` functions and constructors there), then a relink
   of the `device` binary alone with `ld.gold --section-ordering-file` and
   `-C relocation-model=static`.
4. `--fault-rounds` (needs linux `perf`): serve natively under `perf record -e page-faults -d`;
   functions whose first instruction fetch faulted outside the ordered block (e.g. kernels
   picked at run time for this CPU, which valgrind's emulated CPU does not pick) join the
   order, relink, repeat.
5. The plain build is restored (`target/release/device` stays the normal PIE binary); the laid-out
   one is `target/release/device-laid-out`, with the sources it was built from beside it
   (`device-laid-out.json`: perf.py measures it only while they are unchanged).
6. Checks: both binaries classify the texts identically (JSON lines minus timings), once with
   the symbolic plan alone and once with the fixed-length plans alone (the race between them
   is timed, so with it two runs of one binary may differ in the last digits).
7. Measures `device serve` peak RSS (VmHWM), anonymous and file-backed RSS and cold start of both
   binaries, interleaved (perf.py's serve_probe), and writes the table beside the laid-out binary
   (`target/release/device-laid-out.md`); `perf.py --laid-out-only` puts it in this machine's
   section of docs/benchmarks.md.

The order names symbols of this very build (their hashes change with the code and the target), so
the script profiles and relinks in one go; a board build would need the profile taken on an
aarch64 machine (valgrind and perf run there), not under qemu.

Needs: cargo, valgrind, binutils (nm, ld.gold); optional linux-perf.
"""
import argparse
import hashlib
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
import tty
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # noqa: E402  (serve_probe: the same measurement as docs/benchmarks.md)

ROOT = perf.ROOT
RELEASE = ROOT / "target/release"
WORK = RELEASE / "layout"
PLAIN = WORK / "device-plain"
LAID_OUT = RELEASE / "device-laid-out"
MD = RELEASE / "device-laid-out.md"


def log(*a):
    print("code_layout:", *a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"code_layout: failed ({r.returncode}): {' '.join(str(c) for c in cmd)}\n{r.stderr[-3000:]}")
    return r


def read_texts(path, n):
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"].replace("\n", " ") for r in rows if r.get("text")][:n]


def serve_session(prefix, binary, bundle, variant, texts, timeout):
    """Runs `prefix + device serve` with `texts` on stdin and a pty as the port, until every
    text is answered, then stops it: valgrind writes its profile on SIGTERM, perf record on SIGINT."""
    master, slave = os.openpty()
    tty.setraw(slave)
    cmd = prefix + perf.serve_cmd(binary, bundle, os.ttyname(slave), variant)
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p.stdin.write("".join(t + "\n" for t in texts).encode())
    p.stdin.flush()
    buf, frames, deadline = b"", 0, time.time() + timeout
    while time.time() < deadline and frames < len(texts):
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            buf += os.read(master, 65536)
            frames = perf.frames_in(buf)
    p.send_signal(signal.SIGINT if prefix and prefix[0] == "perf" else signal.SIGTERM)
    try:
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
    os.close(master)
    os.close(slave)
    if frames < len(texts):
        raise RuntimeError(f"{prefix[0] if prefix else 'serve'}: {frames} of {len(texts)} texts answered in {timeout} s")


def callgrind_functions(binary, bundle, variant, texts):
    """Functions `device serve` runs, as mangled symbol names, in first-call order."""
    out = WORK / "callgrind.out"
    serve_session(["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}"],
                  binary, bundle, variant, texts, timeout=1800)
    names, seen, order = {}, set(), []
    for line in out.read_text(errors="replace").splitlines():
        m = re.match(r"^c?fn=\((\d+)\)(?: (.*))?$", line)
        if not m:
            continue
        if m.group(2):
            names[m.group(1)] = re.sub(r"'\d+$", "", m.group(2))  # callgrind's recursion-depth suffix
        name = names.get(m.group(1))
        if name and name not in seen:
            seen.add(name)
            order.append(name)
    if not order:
        sys.exit(f"code_layout: no functions in the callgrind profile {out}")
    return order


def faulting_functions(binary, bundle, variant, texts):
    """Functions whose code faulted in natively (first touch of each mapped block)."""
    data = WORK / "faults.data"
    serve_session(["perf", "record", "-q", "-e", "page-faults", "-c", "1", "-d", "-o", str(data)],
                  binary, bundle, variant, texts, timeout=120)
    script = run(["perf", "script", "--no-demangle", "-i", data, "-F", "addr,ip,sym,dso"]).stdout
    found = []
    for line in script.splitlines():
        m = re.match(r"\s*([0-9a-f]+)\s+(\S+)\s+\((.*?)\)\s+([0-9a-f]+)\s+\S+\s+\((.*?)\)", line)
        # an instruction fetch: the faulting address is the instruction pointer
        if m and m.group(1) == m.group(4) and Path(m.group(3)).name == binary.name:
            found.append(m.group(2))
    return found


def text_symbols(binary):
    syms = []
    for line in run(["nm", binary]).stdout.splitlines():
        p = line.split()
        if len(p) == 3 and p[1] in "tTwW":
            syms.append(p[2])
    return syms


def relink(hot, present):
    """Relinks target/release/device with the `hot` functions among its symbols `present`
    first (the names do not change with the link); returns a copy's path."""
    rank = {}
    for i, name in enumerate(hot):
        rank.setdefault(name, i)
    ordered = sorted((rank[s], s) for s in present if s in rank)
    lines = [f".text{kind}.{s}\n" for _, s in ordered for kind in ("", ".unlikely", ".startup", ".hot")]
    lines.append(".text.startup\n")  # constructors (inventory/ctor registrations) run at start
    body = "".join(lines)
    # A new file name per content: cargo relinks only when the rustc arguments change.
    order = WORK / f"order-{hashlib.sha256(body.encode()).hexdigest()[:12]}.txt"
    order.write_text(body)
    run(["cargo", "rustc", "--release", "-p", "device", "--bin", "device", "--",
         "-C", "relocation-model=static", "-C", "link-arg=-fuse-ld=gold",
         "-C", f"link-arg=-Wl,--section-ordering-file={order}"], cwd=ROOT)
    out = WORK / f"device-{order.stem}"
    shutil.copy2(RELEASE / "device", out)
    log(f"relinked with {len(ordered)} functions first ({order.name})")
    return out


def restore_plain():
    # `cargo build` treats the `cargo rustc` output as fresh; touching the bin's source makes it
    # relink the normal (PIE, default layout) binary that tests and perf.py use.
    os.utime(ROOT / "device/src/bin/device/main.rs")
    run(["cargo", "build", "--release", "-p", "device"], cwd=ROOT)
    kind = run(["readelf", "-h", RELEASE / "device"]).stdout
    if "DYN" not in kind:
        sys.exit("code_layout: target/release/device was not restored to the plain PIE build")


# Which plan serves a length is decided by timing (each bucket's fixed-length plan races
# the symbolic plan), and the plans' answers differ in the last digits, so two runs of the
# same binary may differ. Each of these settings routes every text the same way every run.
DETERMINISTIC_ROUTES = ({"DEVICE_SYMBOLIC_ONLY": "1"}, {"DEVICE_FIXED_PLANS": "1"})


def answers(binary, bundle, variant, texts):
    """The binary's answers (minus timings) under each of DETERMINISTIC_ROUTES."""
    out = []
    for route in DETERMINISTIC_ROUTES:
        r = subprocess.run([str(binary), "classify", "--bundle", str(bundle), "--allow-unsigned",
                            "--variant", variant], input="".join(t + "\n" for t in texts),
                           capture_output=True, text=True, env={**os.environ, **route})
        if r.returncode != 0:
            sys.exit(f"code_layout: {binary} classify failed: {r.stderr[-1000:]}")
        for line in r.stdout.splitlines():
            j = json.loads(line)
            j.pop("inference_us", None)
            out.append((tuple(route), j))
    return out


def section_sizes(binary):
    sizes = {}
    for line in run(["readelf", "-SW", binary]).stdout.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m:
            sizes[m.group(1)] = int(m.group(2), 16)
    return sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, help="bundle served while profiling and measuring")
    ap.add_argument("--variant", action="append", help="variant(s) to measure (default: int8-compute)")
    ap.add_argument("--profile-texts", default=str(ROOT / "models/demo/test.csv"),
                    help="CSV whose texts drive the profile (default: the shipped demo test set)")
    ap.add_argument("--texts", default=None,
                    help="CSV of measured texts (default: ../shared/data/snips/test.csv, else the demo set)")
    ap.add_argument("--fault-rounds", type=int, default=2, help="native page-fault refinement rounds (0 = off)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    ap.add_argument("--no-docs", action="store_true", help="do not write target/release/device-laid-out.md")
    args = ap.parse_args()
    variants = args.variant or ["int8-compute"]
    bundle = Path(args.bundle).resolve()
    shared = ROOT.parent / "shared/data/snips/test.csv"
    measured_file = args.texts or (str(shared) if shared.exists() else args.profile_texts)
    profile_texts = read_texts(args.profile_texts, 200)
    texts = read_texts(measured_file, 200)
    for tool in ("valgrind", "nm", "readelf", "ld.gold"):
        if not shutil.which(tool):
            sys.exit(f"code_layout: needs {tool} (apt-get install valgrind binutils)")
    WORK.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    log("building the plain release binary")
    run(["cargo", "build", "--release", "-p", "device"], cwd=ROOT)
    shutil.copy2(RELEASE / "device", PLAIN)
    log("profiling device serve under callgrind (a few minutes)")
    hot = []
    try:
        for v in variants:
            hot += callgrind_functions(PLAIN, bundle, v, profile_texts)
    except RuntimeError as e:
        sys.exit(f"code_layout: callgrind profile failed: {e}")
    log(f"{len(set(hot))} functions run")
    rounds_done = 0
    try:
        present = set(text_symbols(PLAIN))
        laid = relink(hot, present)
        for i in range(args.fault_rounds):
            if not shutil.which("perf"):
                log("no linux perf: skipping the native page-fault rounds")
                break
            new, known = [], set(hot)
            try:
                for v in variants:
                    new += [f for f in faulting_functions(laid, bundle, v, profile_texts) if f not in known]
            except RuntimeError as e:  # e.g. perf_event_paranoid forbids it
                log(f"page-fault round skipped: {e}")
                break
            rounds_done += 1
            log(f"fault round {i + 1}: {len(set(new))} more functions")
            if not new:
                break
            hot += new
            laid = relink(hot, present)
    finally:
        restore_plain()  # whatever failed, target/release/device goes back to the plain build
    # perf.py measures the laid-out binary while device_sources() still matches this record.
    shutil.copy(laid, LAID_OUT)
    meta = {"sources": perf.device_sources(), "order": laid.name, "functions": len(set(hot))}
    LAID_OUT.with_name(LAID_OUT.name + ".json").write_text(json.dumps(meta, indent=1))
    layout_secs = time.time() - t0

    for v in variants:
        a, b = answers(PLAIN, bundle, v, texts), answers(LAID_OUT, bundle, v, texts)
        if a != b:
            sys.exit(f"code_layout: the laid-out binary answers differently ({v})")
    log(f"answers identical on {len(texts)} texts")

    probes = {(name, v): [] for name in ("plain", "laid-out") for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            for name, binary in (("plain", PLAIN), ("laid-out", LAID_OUT)):
                perf.DEVICE = binary
                probes[(name, v)].append(perf.serve_probe(bundle, texts, v))
    med = lambda xs, k: statistics.median(x[k] for x in xs if x[k] is not None)
    sizes = {name: section_sizes(b) for name, b in (("plain", PLAIN), ("laid-out", LAID_OUT))}
    rows = []
    for v in variants:
        for name in ("plain", "laid-out"):
            p = probes[(name, v)]
            rows.append(f"| {name} | {v} | {med(p, 'vmhwm_kb') / 1024:.1f} MB | "
                        f"{med(p, 'rss_anon_kb') / 1024:.1f} / {med(p, 'rss_file_kb') / 1024:.1f} MB | "
                        f"{med(p, 'cold_start_ms'):.0f} ms | {sizes[name].get('.rela.dyn', 0) / 1e6:.2f} MB |")
    for r in rows:
        log(r)
    cmd = "tools/benchmarks/code_layout.py --bundle " + os.path.relpath(bundle, ROOT)
    for v in args.variant or []:
        cmd += f" --variant {v}"
    load = os.getloadavg()[0]
    mach = perf.machine()
    md = f"""### Code layout of the device binary

`{cmd}` ({layout_secs / 60:.0f} min, {rounds_done} native page-fault round(s)). Both binaries answered
the {len(texts)} measured texts identically. Machine: {mach["cpu"]}, {mach["cores"]} cores
({", ".join(mach["isa"])}). `device serve`, {len(texts)} texts from `{os.path.relpath(measured_file, ROOT)}`
(which the profile never saw), median of {args.rounds} interleaved rounds, load average {load:.1f}:

| binary | variant | serve peak RSS | anon / file | cold start | `.rela.dyn` |
|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    if not args.no_docs:
        MD.write_text(md)
        log(f"wrote {MD.relative_to(ROOT)}")
    print(md)


if __name__ == "__main__":
    main()
