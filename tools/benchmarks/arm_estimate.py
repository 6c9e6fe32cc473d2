#!/usr/bin/env python3
"""Estimated per-query latency on Raspberry Pi 4 / Pi 5 cores, without a board (issue #30).

    tools/benchmarks/arm_estimate.py [--bundle DIR ...] [--no-build] [--cores a72,a76]
        [--variants float,int8-compute,weights-int8+int8-act,float+f16] [--plans symbolic,fixed]
        [--no-ort] [--smoke] [--tune]
    tools/benchmarks/arm_estimate.py --setup-only      # fetch and build the tools, nothing else

The method: the aarch64 `device` binary (and onnxruntime's aarch64 wheel on an arm64 python3)
run under qemu-user with a CPU model per board (`-cpu cortex-a72` for a Pi 4, `cortex-a76`
for a Pi 5) and a TCG plugin (arm_estimate/bbcount.c) that counts the executions of every
translated basic block. Two runs differing only by K more queries give the per-query count
of every block; each block is costed with llvm-mca (`-mcpu=cortex-a72`; `neoverse-n1` for the
A76, the same core design, which LLVM models properly while its cortex-a76 uses the old A57
tables) as its steady-state cycles when looped on itself; blocks outside the heaviest
--mca-blocks count 1 cycle per instruction. Cycles / clock (Pi 4 1.8 GHz, Pi 5 2.4 GHz) = µs.

What it does not model: cache misses, memory bandwidth, branch mispredictions, the OS. Hot
NEON loops come out within ~10-25 %; whole queries are a lower bound, 1.3-2x under for
models that stream their weights from memory. Ratios (device vs onnxruntime, variant vs
variant, one core vs the other) are more trustworthy than the microseconds.

Deterministic counts: the device's default engine races each length bucket's fixed-length
plan against the symbolic plan on first use, and that race is timed, so its iteration count
differs from run to run and would pollute the difference. The device runs here with the race
off: DEVICE_SYMBOLIC_ONLY=1 (the symbolic plan alone) and/or DEVICE_FIXED_PLANS=1 (every
bucket on its fixed-length plan), and with --variant given (no timed variant tuning).

Set-up (idempotent, in --cache, default ~/.cache/edge-classifier/arm-estimate): qemu-aarch64
from Debian's `qemu-user` (the system one if it accepts -plugin, else the .deb unpacked;
`qemu-user-static` cannot load plugins), the plugin built with the host C compiler, an
LD_PRELOAD shim (arm_estimate/fakecpu.c, built with aarch64-linux-gnu-gcc) that shows the
guest a Pi 4 / Pi 5 /proc/cpuinfo (tract picks kernels by CPU part; onnxruntime crashes on
the host's x86 cpuinfo), llvm-mca/llvm-mc from Debian's llvm-19 + libllvm19 .debs unpacked
with dpkg -x, and for onnxruntime an arm64 python3.11 from Debian's arm64 .debs (a private apt
list for arm64 in the cache, `apt-get download` + `dpkg -x`; the system's apt set-up is not
touched) with the manylinux aarch64 wheels of onnxruntime and numpy from PyPI.

The page: docs/benchmarks.md, section "Raspberry Pi 4 / Pi 5 cores (estimated)", between
`<!-- arm_estimate:BEGIN NAME -->` and `<!-- arm_estimate:END NAME -->` (NAME: --section,
default pi-cores). Results accumulate in WORK/arm_estimate.json (key: bundle, variant,
core, length, side), so a later run with another bundle adds its rows to the same table.
--smoke: one variant, the A76 model, short queries, the symbolic plan, K=3, device and
onnxruntime (--no-ort: device only); writes to --out (the test gives a temporary file).
"""
import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import doc_section

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "arm_estimate"
TARGET = "aarch64-unknown-linux-gnu"
DEVICE_ARM = ROOT / f"target/{TARGET}/release/device"
TOOLS = ROOT / "target/release/tools"
SYSROOT = Path("/usr/aarch64-linux-gnu")
LLVM = "19"
MATTR = "+neon,+dotprod,+fullfp16"

CORES = {
    "a72": {"board": "Pi 4", "name": "Cortex-A72", "qemu": "cortex-a72", "mca": "cortex-a72",
            "ghz": 1.8, "cpuinfo": "cpuinfo-a72.txt", "f32_macs": 4, "i8_macs": 8, "i8_how": "smull"},
    "a76": {"board": "Pi 5", "name": "Cortex-A76", "qemu": "cortex-a76", "mca": "neoverse-n1",
            "ghz": 2.4, "cpuinfo": "cpuinfo-a76.txt", "f32_macs": 8, "i8_macs": 32, "i8_how": "sdot"},
}
PLAN_ENV = {"symbolic": "DEVICE_SYMBOLIC_ONLY", "fixed": "DEVICE_FIXED_PLANS"}
SHORT_TEXT = "add this song to my workout playlist please"
# arm64 .debs for onnxruntime's python (python3.11 of Debian 12 and the libraries it and the
# wheels load; libc6 too, so the unpacked tree is a complete root for qemu's -L).
ARM64_DEBS = ["python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6",
              "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libffi8", "libbz2-1.0",
              "liblzma5", "libssl3", "libuuid1", "libsqlite3-0", "libncursesw6",
              "libtinfo6", "libreadline8", "libcrypt1", "libzstd1"]


def log(*a):
    print("arm_estimate:", *a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    check = kw.pop("check", True)
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        sys.exit(f"arm_estimate: failed ({r.returncode}): {' '.join(str(c) for c in cmd)}\n"
                 f"{r.stdout[-1500:]}\n{r.stderr[-3000:]}")
    return r


def sha(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
    return h.hexdigest()[:12]


# ---------------------------------------------------------------- set-up (idempotent)

class Tools:
    """Everything the estimate runs, found or made under the cache directory."""

    def __init__(self, cache):
        self.cache = Path(cache)
        self.cache.mkdir(parents=True, exist_ok=True)

    # qemu-user with plugin support
    def qemu(self):
        def accepts_plugin(q):
            r = subprocess.run([q, "-plugin", "/nonexistent.so", "/bin/true"], capture_output=True, text=True)
            return "unknown option" not in (r.stderr + r.stdout)
        for q in (os.environ.get("ARM_ESTIMATE_QEMU"), shutil.which("qemu-aarch64")):
            if q and Path(q).exists() and accepts_plugin(q):
                return q
        q = self.cache / "qemu-user/usr/bin/qemu-aarch64"
        if not q.exists():
            log("qemu-aarch64 with plugin support: unpacking Debian's qemu-user .deb")
            debs = self.cache / "debs-amd64"
            debs.mkdir(exist_ok=True)
            apt_download(["qemu-user"], debs)
            for d in debs.glob("qemu-user_*.deb"):
                run(["dpkg", "-x", d, self.cache / "qemu-user"])
        if not accepts_plugin(str(q)):
            sys.exit("arm_estimate: no qemu-aarch64 that loads plugins (apt-get install qemu-user)")
        return str(q)

    def missing(self, device, ort):
        """What a run would still have to fetch or cannot have (nothing is fetched here)."""
        out = []
        if not Path(device).is_file():
            out.append(f"the aarch64 device binary {device} (cargo build --release --target {TARGET} -p device)")
        q = shutil.which("qemu-aarch64")
        cached = self.cache / "qemu-user/usr/bin/qemu-aarch64"
        if not (q and "unknown option" not in subprocess.run([q, "-plugin", "/nonexistent.so", "/bin/true"],
                                                              capture_output=True, text=True).stderr) \
                and not cached.exists():
            out.append("qemu-aarch64 with plugin support (Debian's qemu-user)")
        if not SYSROOT.is_dir() or not shutil.which("aarch64-linux-gnu-gcc"):
            out.append(f"aarch64-linux-gnu-gcc and {SYSROOT} (gcc-aarch64-linux-gnu libc6-dev-arm64-cross)")
        if not shutil.which(os.environ.get("CC", "cc")):
            out.append("a host C compiler (cc) for the plugin")
        if not Path(f"/usr/lib/llvm-{LLVM}/bin/llvm-mca").exists() and not (self.cache / f"llvm-{LLVM}/.ready").exists():
            out.append(f"llvm-mca {LLVM} (--setup-only unpacks Debian's llvm-{LLVM} into {self.cache})")
        if ort:
            if not (self.cache / "arm64-root/.ready").exists() or not (self.cache / "arm64-site/.ready").exists():
                out.append(f"arm64 python3 + onnxruntime (--setup-only --ort fetches them into {self.cache})")
            if subprocess.run([sys.executable, "-c", "import tokenizers"], capture_output=True).returncode != 0:
                out.append("Python tokenizers on the host (token ids for onnxruntime)")
        return out

    def plugin(self):
        src = HERE / "bbcount.c"
        out = self.cache / f"bbcount-{sha(src.read_bytes())}.so"
        if not out.exists():
            cc = os.environ.get("CC", "cc")
            run([cc, "-shared", "-fPIC", "-O2", "-o", f"{out}.tmp", src])
            os.replace(f"{out}.tmp", out)
        return out

    def fakecpu(self):
        src = HERE / "fakecpu.c"
        out = self.cache / f"fakecpu-{sha(src.read_bytes())}.so"
        if not out.exists():
            run(["aarch64-linux-gnu-gcc", "-shared", "-fPIC", "-O2", "-o", f"{out}.tmp", src, "-ldl"])
            os.replace(f"{out}.tmp", out)
        return out

    # llvm-mca / llvm-mc of LLVM 19
    def llvm(self):
        """(bin dir, env) of an LLVM with llvm-mca and llvm-mc."""
        system = Path(f"/usr/lib/llvm-{LLVM}/bin")
        if (system / "llvm-mca").exists() and (system / "llvm-mc").exists():
            return system, dict(os.environ)
        root = self.cache / f"llvm-{LLVM}"
        bindir = root / f"usr/lib/llvm-{LLVM}/bin"
        env = dict(os.environ, LD_LIBRARY_PATH=f"{root}/usr/lib/x86_64-linux-gnu:{root}/usr/lib/llvm-{LLVM}/lib")
        if not (root / ".ready").exists():
            log(f"llvm-mca: unpacking Debian's llvm-{LLVM} and libllvm{LLVM} .debs")
            debs = self.cache / "debs-amd64"
            debs.mkdir(exist_ok=True)
            apt_download([f"llvm-{LLVM}", f"libllvm{LLVM}"], debs)
            for d in list(debs.glob(f"llvm-{LLVM}_*.deb")) + list(debs.glob(f"libllvm{LLVM}_*.deb")):
                run(["dpkg", "-x", d, root])
            run([bindir / "llvm-mca", "--version"], env=env)
            (root / ".ready").write_text("ok\n")
        return bindir, env

    # arm64 python3 + onnxruntime + numpy
    def arm_python(self):
        """(root for qemu -L, python3 path, site-packages dir)."""
        root, site = self.cache / "arm64-root", self.cache / "arm64-site"
        py = root / "usr/bin/python3.11"
        if not (root / ".ready").exists():
            log("arm64 python3.11: private arm64 apt list, apt-get download + dpkg -x of Debian's .debs")
            apt = self.cache / "apt-arm64"
            for d in ("lists/partial", "archives/partial"):
                (apt / d).mkdir(parents=True, exist_ok=True)
            (apt / "status").touch()
            opts = ["-q", "-o", f"Dir::State::Lists={apt}/lists", "-o", f"Dir::Cache={apt}",
                    "-o", f"Dir::State::status={apt}/status", "-o", "APT::Architecture=arm64",
                    "-o", "APT::Architectures::=arm64"]
            run(["apt-get", *opts, "update"])
            debs = apt / "debs"
            debs.mkdir(exist_ok=True)
            run(["apt-get", *opts, "download", *ARM64_DEBS], cwd=debs)
            for d in sorted(debs.glob("*.deb")):
                run(["dpkg", "-x", d, root])
            (root / ".ready").write_text("ok\n")
        if not (site / ".ready").exists():
            ver = os.environ.get("ARM_ESTIMATE_ORT_VERSION") or host_ort_version()
            log(f"onnxruntime {ver or '(newest)'} + numpy: manylinux aarch64 wheels from PyPI")
            wheels = self.cache / "wheels"
            run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                 "--only-binary=:all:", "--no-deps", "--platform", "manylinux_2_28_aarch64",
                 "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_17_aarch64",
                 "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                 "-d", wheels, f"onnxruntime=={ver}" if ver else "onnxruntime", "numpy<2.3"])
            site.mkdir(exist_ok=True)
            import zipfile
            for w in sorted(wheels.glob("*.whl")):
                zipfile.ZipFile(w).extractall(site)
            (site / ".ready").write_text("ok\n")
        return root, py, site


def apt_download(names, cwd):
    """apt-get download from the system's lists, after one `apt-get update` if they lack a package."""
    r = run(["apt-get", "download", "-q", *names], cwd=cwd, check=False)
    if r.returncode != 0:
        run(["apt-get", "update", "-q"])
        run(["apt-get", "download", "-q", *names], cwd=cwd)


def host_ort_version():
    r = subprocess.run([sys.executable, "-c", "import onnxruntime; print(onnxruntime.__version__)"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


# ---------------------------------------------------------------- one counted run

def qemu_env(extra):
    """A small environment for qemu and its guest (the host's LD_PRELOAD etc. stay out)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def counted_run(tools, core, cmd, guest_env, stdin_text, out_file, sysroot):
    """Run CMD (aarch64) under qemu with the block counter; returns the dump's path."""
    c = CORES[core]
    q = [tools.qemu_bin, "-cpu", c["qemu"], "-L", sysroot,
         "-plugin", f"{tools.plugin_so},out={out_file}",
         "-E", f"LD_PRELOAD={tools.fakecpu_so}", "-E", f"FAKE_CPUINFO={HERE / c['cpuinfo']}"]
    for k, v in guest_env.items():
        q += ["-E", f"{k}={v}"]
    t0 = time.time()
    r = subprocess.run([str(x) for x in q + cmd], input=stdin_text, capture_output=True, text=True,
                       env=qemu_env({}))
    if r.returncode != 0 or not Path(out_file).exists():
        sys.exit(f"arm_estimate: guest run failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr[-3000:]}")
    return r.stdout, time.time() - t0


PAGE = 4096


def load_dump(path):
    """{hex bytes: [count, n_insns, symbol]}: blocks with the same bytes merged (same cost).

    qemu ends a block at every 4 KiB page boundary, so straight-line code that crosses one
    arrives as two blocks, and a loop crossing one as two loops to llvm-mca, costed dearer
    than the one loop it is (a kernel's loop split so came out ~12 % slower: a layout
    accident of the build, not a property of the code). So every block that ends on a page
    boundary (it runs on into the next page) is joined to the block starting there, and
    that block keeps only its executions entered some other way (a loop's back edge). A
    boundary whose incoming blocks ran more often than the block after it (one of them
    ended in a branch there) is left as it is."""
    blocks = []
    for line in open(path):
        if line.startswith("#"):
            continue
        fields = line.rstrip("\n").split("\t")
        addr = int(fields[4], 16) if len(fields) > 4 else None
        blocks.append([int(fields[0]), int(fields[1]), fields[2], fields[3], addr])
    starts, ends = {}, {}
    for b in blocks:
        if b[4] is not None:
            starts.setdefault(b[4], []).append(b)
            end = b[4] + 4 * b[1]
            if end % PAGE == 0:
                ends.setdefault(end, []).append(b)
    # The highest boundary first, so a block already holds what follows it when it is joined.
    for boundary in sorted(ends, reverse=True):
        after = starts.get(boundary, [])
        before = ends[boundary]
        if len(after) != 1 or sum(b[0] for b in before) > after[0][0]:
            continue
        nxt = after[0]
        for b in before:
            b[1] += nxt[1]
            b[3] += nxt[3]
            nxt[0] -= b[0]
    d = {}
    for cnt, n, sym, hexb, _ in blocks:
        if cnt > 0:
            e = d.setdefault(hexb, [0, n, sym])
            e[0] += cnt
    return d


def delta(a, b, k):
    """Per-query counts: (b - a) / k per block; negative differences (noise) dropped."""
    out, neg = {}, 0
    for key, (cb, n, sym) in b.items():
        ca = a.get(key, [0])[0]
        dc = (cb - ca) / k
        if dc > 0:
            out[key] = [dc, n, sym]
        elif dc < 0:
            neg += -dc * n
    return out, neg


def insns(blocks):
    return sum(c * n for c, n, _ in blocks.values())


_ESCAPES = {"$LT$": "<", "$GT$": ">", "$RF$": "&", "$BP$": "*", "$C$": ",", "$u20$": " ",
            "$u27$": "'", "$u5b$": "[", "$u5d$": "]", "$u7b$": "{", "$u7d$": "}", "$u7e$": "~",
            "$SP$": "@", "..": "::"}


def demangle(sym):
    """A legacy Rust symbol (`_ZN...17h<hash>E`) as a path without its hash; others unchanged.
    qemu names only the main binary's sized symbols: a block without one is in a shared
    library (see `shared_library_blocks`) or in hand-written assembly without a symbol size
    (tract-linalg's kernels)."""
    if sym == "?":
        return "(no symbol: assembly kernels)"
    m = re.match(r"_ZN(.*)E(\.llvm\.\d+)?$", sym)
    if not m:
        return sym
    rest, parts = m.group(1), []
    while rest and rest[0].isdigit():
        n = re.match(r"\d+", rest).group(0)
        part, rest = rest[len(n):len(n) + int(n)], rest[len(n) + int(n):]
        parts.append(part)
    if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    name = "::".join(p.lstrip("_") if p.startswith("_$") else p for p in parts)
    for k, v in _ESCAPES.items():
        name = name.replace(k, v)
    return name


def shared_library_blocks(blocks, libraries):
    """The hex keys of symbol-less blocks whose bytes are found in one of LIBRARIES (files):
    {key: library name}. The guest's glibc (`malloc`, `free`, `memset`, `memcpy`) is where most
    of a query's symbol-less instructions are; its code is the sysroot's, byte for byte."""
    images = []
    for lib in libraries:
        try:
            images.append((Path(lib).name, Path(lib).read_bytes()))
        except OSError:
            pass
    found = {}
    for h, (_, _, sym) in blocks.items():
        if sym != "?":
            continue
        code = bytes.fromhex(h)
        for name, image in images:
            if len(code) >= 8 and image.find(code) >= 0:
                found[h] = name
                break
    return found


def profile(blocks, block_cycles, ghz, top, libraries=()):
    """Where a query's estimated time goes, by function, heaviest first:
    [(share, µs, instructions, name)], each block costed as in the estimate. Symbol-less
    blocks found in one of LIBRARIES count under that library's name."""
    in_library = shared_library_blocks(blocks, libraries)
    by = {}
    for h, (c, n, sym) in blocks.items():
        name = f"({in_library[h]}: malloc, free, memset, ...)" if h in in_library else demangle(sym)
        e = by.setdefault(name, [0.0, 0.0])
        e[0] += c * block_cycles.get(h, n)
        e[1] += c * n
    total = sum(v[0] for v in by.values()) or 1
    rows = sorted(by.items(), key=lambda kv: -kv[1][0])[:top]
    return [(v[0] / total, v[0] / (ghz * 1e3), v[1], k) for k, v in rows]


# ---------------------------------------------------------------- llvm-mca costing

class Coster:
    """Steady-state cycles per execution of a block (llvm-mca, the block looped on itself),
    cached per (mcpu, bytes) in the cache directory."""

    SEP = "404f4fd4"   # hlt #0x7a7a, little-endian: a marker between blocks in one llvm-mc run

    def __init__(self, tools):
        self.bindir, self.env = tools.llvm()
        self.path = tools.cache / "mca-cache.json"
        try:
            self.memo = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.memo = {}

    def save(self):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.memo))
        os.replace(tmp, self.path)

    def disassemble(self, hexes):
        """One llvm-mc run for all blocks, split at the marker instruction."""
        words = []
        for h in hexes:
            words += [h[i:i + 8] for i in range(0, len(h), 8)] + [self.SEP]
        text = "\n".join(" ".join("0x" + w[j:j + 2] for j in range(0, 8, 2)) for w in words)
        r = subprocess.run([self.bindir / "llvm-mc", "--disassemble", "-triple=aarch64", f"-mattr={MATTR}"],
                           input=text, capture_output=True, text=True, env=self.env)
        blocks, cur = [], []
        for line in r.stdout.splitlines():
            s = line.strip()
            if not s or s.startswith("."):
                continue
            if s.startswith("hlt") and "0x7a7a" in s:
                blocks.append(cur)
                cur = []
            else:
                cur.append(s)
        if len(blocks) != len(hexes):
            raise RuntimeError(f"llvm-mc: {len(blocks)} blocks for {len(hexes)}")
        return blocks

    def mca(self, mcpu, asm_blocks):
        src = []
        for i, asm in enumerate(asm_blocks):
            src += [f"# LLVM-MCA-BEGIN b{i}"] + asm + ["# LLVM-MCA-END"]
        r = subprocess.run([self.bindir / "llvm-mca", "-mtriple=aarch64", f"-mcpu={mcpu}", f"-mattr={MATTR}",
                            "-iterations=100", "-"], input="\n".join(src) + "\n",
                           capture_output=True, text=True, env=self.env)
        regions = {}
        cur = None
        for line in r.stdout.splitlines():
            m = re.match(r"\[\d+\] Code Region - b(\d+)", line)
            if m:
                cur = int(m.group(1))
            m = re.match(r"Total Cycles:\s+(\d+)", line)
            if m and cur is not None:
                regions[cur] = int(m.group(1)) / 100
                cur = None
        if len(asm_blocks) == 1 and not regions:
            m = re.search(r"Total Cycles:\s+(\d+)", r.stdout)
            if m:
                regions[0] = int(m.group(1)) / 100
        return regions, r.returncode

    def cost(self, mcpu, hexes):
        """{hex: cycles per execution} for the blocks, None where llvm-mca could not say."""
        todo = [h for h in hexes if f"{mcpu}:{h}" not in self.memo]
        if todo:
            asm = self.disassemble(todo)
            regions, rc = self.mca(mcpu, asm)
            if rc != 0 or len(regions) != len(todo):
                regions = {}
                for i, a in enumerate(asm):          # one bad block: cost them one by one
                    one, _ = self.mca(mcpu, [a]) if a else ({}, 0)
                    if 0 in one:
                        regions[i] = one[0]
            for i, h in enumerate(todo):
                n_insns = len(h) // 8
                # instructions llvm-mc could not decode count 1 cycle each
                missing = n_insns - len(asm[i])
                self.memo[f"{mcpu}:{h}"] = regions[i] + missing if i in regions else None
            self.save()
        return {h: self.memo[f"{mcpu}:{h}"] for h in hexes}


def estimate(coster, blocks, core, top):
    """Cycles per query and how much of the instruction count llvm-mca costed."""
    c = CORES[core]
    ranked = sorted(blocks.items(), key=lambda kv: -kv[1][0] * kv[1][1])
    head = ranked[:top]
    costs = coster.cost(c["mca"], [h for h, _ in head])
    cycles = covered = 0.0
    total = insns(blocks)
    for h, (cnt, n, _) in head:
        if costs[h] is not None:
            cycles += costs[h] * cnt
            covered += cnt * n
    cycles += total - covered                 # the rest: 1 cycle per instruction
    return {"cycles": cycles, "insns": total, "mca_share": covered / total if total else 0.0,
            "us": cycles / (c["ghz"] * 1e3),
            "block_cycles": {h: costs[h] for h, _ in head if costs[h] is not None}}


# ---------------------------------------------------------------- bundles and queries

def manifest(b):
    return json.loads((Path(b) / "manifest.json").read_text())


def variants(b, wanted=None):
    """(name, ONNX file) of each variant of bundle B, or of WANTED (a list) where given:
    a manifest variant, or one of the device's other ways of computing one (`NAME+f16`,
    `weights-int8+int8-act`), which runs the base variant's file."""
    m = manifest(b)
    vs = [(v["name"], v["file"]) for v in m["variants"]] if m.get("variants") else [("float", "model.onnx")]
    if not wanted:
        return vs
    files = dict(vs)
    return [(w, files[base(w)]) for w in wanted if base(w) in files]


def base(variant):
    """The manifest variant of a device choice: `weights-int8+int8-act` -> `weights-int8`."""
    return variant.split("+", 1)[0]


def int8_compute(variant):
    return variant == "int8-compute" or variant.endswith("+int8-act")


def bundle_label(b):
    return f"{manifest(b).get('preset') or '?'} ({Path(b).name})"


def macs_per_query(onnx_path, tokens):
    """Multiply-accumulates of one query (perf.py's count, halved): per-token weights x tokens +
    classifier + 2·tokens²·d per layer (Q·Kᵀ and P·V). None without the onnx package."""
    try:
        import onnx
    except ImportError:
        return None
    m = onnx.load(str(onnx_path), load_external_data=False)
    per_token = head = d = 0
    layers = set()
    for t in m.graph.initializer:
        if len(t.dims) != 2:
            continue
        n, size = t.name, t.dims[0] * t.dims[1]
        if n.startswith("embeddings.word_embeddings"):
            d = t.dims[1]
        elif n.startswith("encoder.layer.") or n.startswith("pooling."):
            per_token += size
            if n.startswith("encoder.layer."):
                layers.add(n.split(".")[2])
        elif n.startswith("classifier."):
            head += size
    return per_token * tokens + head + len(layers) * 2 * tokens * tokens * d


def ngram_row(bundle, text):
    """`text`'s `ngram_ids` row, padded with 0 to the manifest's ngrams.max, for a bundle whose
    model takes that third input; None for a two-input model. Computed here on the host by
    tools/scripts/ngram_ids.py, as the token ids are, so ort_run.py under qemu needs only
    numpy and onnxruntime (the device computes its own, inside its count)."""
    spec = manifest(bundle).get("ngrams")
    if not spec:
        return None
    scripts = str(ROOT / "tools/scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    from ngram_ids import ngram_ids
    ids = ngram_ids(text, spec["buckets"], spec["max"])
    return ids + [0] * (spec["max"] - len(ids))


def queries(bundle):
    """{'short': (text, ids, ngram_ids), '64': (...)}: token ids from the bundle's
    tokenizer.json (Python `tokenizers`, as perf.py; the device's own tokenizer gives the same
    ids) and the n-gram row of ngram_row (None unless the model takes it)."""
    m = manifest(bundle)
    max_len = int(m.get("max_len", 64))
    try:
        import tokenizers
        tok = tokenizers.Tokenizer.from_file(str(Path(bundle) / "tokenizer.json"))
        tok.enable_truncation(max_len)
        tok.no_padding()
        enc = lambda t: tok.encode(t).ids
    except Exception as e:      # no tokenizers: the onnxruntime side is skipped
        log(f"no Python tokenizers ({e}); onnxruntime side needs it")
        enc = None
    out = {"short": (SHORT_TEXT, enc(SHORT_TEXT) if enc else None, ngram_row(bundle, SHORT_TEXT))}
    target = min(64, max_len)
    words = " ".join(l.split(",", 1)[0] for l in (ROOT / "models/demo/test.csv").read_text().splitlines()[1:]
                     if l and l[0].isascii()).split()
    words = [w.strip('"') for w in words if w.strip('"').isascii() and w.strip('"')]
    text = ""
    if enc:
        for w in words:
            cand = (text + " " + w).strip()
            n = len(enc(cand))
            if n <= target:
                text = cand
            if n >= target:
                break
        ids = enc(text)
    else:
        text, ids = " ".join(words[:48]), None
    out["64"] = (text, ids, ngram_row(bundle, text))
    return out


# ---------------------------------------------------------------- the measurements

def measure(tools, a, bundle, variant, vfile, core, lengths, plans, results, work):
    """Device (per plan mode) and onnxruntime runs for one bundle/variant/core; the runs
    R1 = 1 of each length, R2 = short x (1+K) + long x 1, R3 = (1+K) of each give the
    per-query counts of the short (R2-R1) and of the long query (R3-R2)."""
    qs = queries(bundle)
    k = a.step or auto_step(bundle, vfile)
    schedules = [{ln: 1 for ln in lengths}]
    for i in range(len(lengths)):
        schedules.append({ln: (1 + k if j <= i else 1) for j, ln in enumerate(lengths)})
    tag = f"{Path(bundle).name}-{variant}-{core}"
    # onnxruntime runs the file as it is: its rows belong to the manifest variant.
    sides = [("device", p) for p in plans] + ([("onnxruntime", None)] if a.ort and base(variant) == variant else [])
    if a.ort and variant == "weights-int8" and not a.smoke:
        # onnxruntime computes this file with int8 activations; also time it asked for f32,
        # the device's computation of the variant.
        sides.append(("onnxruntime", "f32"))
    for side, plan in sides:
        # onnxruntime's side twice, keeping each length's lower count: a run of it now and
        # then executes tens of millions of instructions once (python or onnxruntime
        # housekeeping), which the N vs N+K difference would charge to the extra queries.
        repeats = 2 if side == "onnxruntime" and not a.smoke else 1
        best = {}
        for rep in range(repeats):
            dumps = []
            for si, sched in enumerate(schedules):
                out = work / f"{tag}-{side}{'-' + plan if plan else ''}-{si}.bb"
                if side == "device":
                    text = "".join(f"{qs[ln][0]}\n" * sched[ln] for ln in lengths)
                    cmd = [a.device, "classify", "--bundle", Path(bundle).resolve(), "--variant", variant]
                    env = {PLAN_ENV[plan]: "1", **dict(e.split("=", 1) for e in a.device_env)}
                    stdout, secs = counted_run(tools, core, cmd, env, text, out, SYSROOT)
                    answers = [l for l in stdout.splitlines() if l.startswith("{")]
                    if len(answers) != sum(sched.values()) or '"error"' in stdout:
                        sys.exit(f"arm_estimate: device answered {len(answers)} of {sum(sched.values())}:\n{stdout[-800:]}")
                else:
                    groups = [[qs[ln][1], sched[ln]] + ([qs[ln][2]] if qs[ln][2] is not None else [])
                              for ln in lengths]
                    cmd = [tools.py, HERE / "ort_run.py", (Path(bundle) / vfile).resolve(), json.dumps(groups)]
                    if plan == "f32":
                        cmd.append("f32")
                    env = {"PYTHONPATH": tools.site, "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
                           "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
                    stdout, secs = counted_run(tools, core, cmd, env, "", out, tools.root)
                log(f"{tag} {side}{' ' + plan if plan else ''} run {si + 1}/{len(schedules)}"
                    f"{f' (repeat {rep + 1}/{repeats})' if repeats > 1 else ''}: {dict(sched)} in {secs:.0f} s")
                dumps.append(load_dump(out))
                if not a.keep_dumps:
                    out.unlink()
            for i, ln in enumerate(lengths):
                per_query, neg = delta(dumps[i], dumps[i + 1], k)
                if ln not in best or insns(per_query) < insns(best[ln][0]):
                    best[ln] = (per_query, neg)
        for i, ln in enumerate(lengths):
            per_query, neg = best[ln]
            ntok = len(qs[ln][1]) if qs[ln][1] else None
            est = estimate(a.coster, per_query, core, a.mca_blocks)
            block_cycles = est.pop("block_cycles")
            est.update({"bundle": str(bundle), "label": bundle_label(bundle), "variant": variant,
                        "core": core, "length": ln, "side": side, "plan": plan, "tokens": ntok,
                        "k": k, "negative_insns": neg, "macs": macs_per_query(Path(bundle) / vfile, ntok) if ntok else None,
                        "when": time.strftime("%Y-%m-%d"), "command": a.command})
            key = "|".join([str(Path(bundle).name), variant, core, ln, side, plan or ""])
            results[key] = est
            log(f"  {ln}: {est['insns'] / 1e6:.2f} M insns/query, {est['us']:.0f} µs "
                f"(llvm-mca costed {est['mca_share']:.0%})")
            if a.profile:
                libc = [SYSROOT / "lib/libc.so.6"] if side == "device" else []
                rows = profile(per_query, block_cycles, CORES[core]["ghz"], a.profile, libc)
                text = "".join(f"{share:6.1%} {us:9.1f} µs {n / 1e3:9.1f} k insns  {name}\n"
                               for share, us, n, name in rows)
                path = work / f"profile-{tag}-{side}{'-' + plan if plan else ''}-{ln}.txt"
                path.write_text(text)
                log(f"  where a {ln} query's instructions go ({path}):\n{text}")


def tune_under_qemu(tools, a, bundle, core, work):
    """`device tune` of a copy of BUNDLE under the core's qemu model (no block counter):
    which candidate the device's own timing picks there, and each one's median."""
    c = CORES[core]
    copy = work / f"tune-{Path(bundle).name}-{core}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(bundle, copy)
    (copy / "variant-choice.json").unlink(missing_ok=True)
    q = [tools.qemu_bin, "-cpu", c["qemu"], "-L", SYSROOT,
         "-E", f"LD_PRELOAD={tools.fakecpu_so}", "-E", f"FAKE_CPUINFO={HERE / c['cpuinfo']}",
         a.device, "tune", "--bundle", copy.resolve(), "--json", "--warmup", "2", "--runs", "5"]
    t0 = time.time()
    r = subprocess.run([str(x) for x in q], capture_output=True, text=True, env=qemu_env({}))
    shutil.rmtree(copy, ignore_errors=True)
    if r.returncode != 0:
        sys.exit(f"arm_estimate: device tune failed under qemu ({r.returncode}):\n{r.stderr[-3000:]}")
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    log(f"{Path(bundle).name} {core}: device tune picked {choice_label(rep['chosen'])} "
        f"in {time.time() - t0:.0f} s")
    return {"bundle": str(bundle), "core": core, "chosen": choice_label(rep["chosen"]),
            "timings": [[t["candidate"], t["median_us"], t["agrees"]] for t in rep["timings"]],
            "skipped": rep.get("skipped", []), "when": time.strftime("%Y-%m-%d"), "command": a.command}


def choice_label(c):
    if c.get("f16"):
        return c["variant"] + "+f16"
    if c.get("int8_activations"):
        return c["variant"] + "+int8-act"
    return c["variant"]


def tune_section(results, tunes):
    """Each tuned bundle and core: the candidate `device tune` picked under the emulated core
    against the fastest device row of the table (short query)."""
    if not tunes:
        return []
    lines = ["", "**`device tune` under the emulated cores** (`--tune`: the aarch64 `device tune` of each",
             "bundle under qemu-user's CPU model, timing its candidates by wall clock under emulation, which",
             "is not the core's time; the table's estimate decides which candidate is fastest; a",
             "`+f16` / `+int8-act` form is chosen only when more than 10 % faster than the fastest plain",
             "variant, `device::variant::TRANSFORM_MARGIN`):", "",
             "| bundle | core | candidates (median µs under qemu) | `device tune` picks | fastest in the table (short query) |",
             "|---|---|---|---|---|"]
    for key in sorted(tunes):
        t = tunes[key]
        est = {}  # variant -> its faster device plan
        for r in results.values():
            if (r["bundle"] == t["bundle"] and r["core"] == t["core"] and r["length"] == "short"
                    and r["side"] == "device"):
                est[r["variant"]] = min(r["us"], est.get(r["variant"], r["us"]))
        cands = ", ".join(f"{c} {us:,.0f}" + ("" if ok else " (disagrees)") for c, us, ok in t["timings"])
        fastest = min(est, key=est.get) if est else None
        missing = [c for c, _, _ in t["timings"] if c not in est]
        fast_s = f"{fastest} (~{fmt_us(est[fastest])})" if fastest else "–"
        if missing:
            fast_s += f"; not estimated: {', '.join(missing)}"
        same = ""
        if fastest is not None:
            gap = est[t["chosen"]] / est[fastest] - 1 if t["chosen"] in est else None
            if t["chosen"] == fastest:
                same = " ✓"
            elif gap is not None and gap <= 0.02:
                same = f" ≈ (estimated {gap:.1%} slower: within the method's repeatability)"
            else:
                same = " ✗" + (f" (estimated {gap:.0%} slower)" if gap is not None else "")
        label = next((r["label"] for r in results.values() if r["bundle"] == t["bundle"]), t["bundle"])
        lines.append(f"| {label} | {CORES[t['core']]['name']} | {cands} | {t['chosen']}{same} | {fast_s} |")
    return lines


def auto_step(bundle, vfile):
    m = macs_per_query(Path(bundle) / vfile, 64)
    return 10 if m is None or m < 1e8 else 2


# ---------------------------------------------------------------- the page

def markers(name):
    return doc_section.markers("arm_estimate", name)


def write_section(path, name, body, title):
    doc_section.write_section(path, "arm_estimate", name, body, title)


def fmt_us(us):
    if us is None:
        return "–"
    return f"{us / 1e3:.2f} ms" if us >= 10000 else f"{us:,.0f} µs"


def limit_us(r, core, variant):
    if not r.get("macs"):
        return None, None
    c = CORES[core]
    per_cycle = c["i8_macs"] if int8_compute(variant) else c["f32_macs"]
    return r["macs"] / (per_cycle * c["ghz"] * 1e3), per_cycle


def report(results, tunes=None, title_note=""):
    rows = {}
    for key, r in results.items():
        rows.setdefault((r["bundle"], r["variant"], r["core"], r["length"]), {})[(r["side"], r["plan"])] = r
    order = {"float": 0, "float+f16": 0.5, "weights-int8": 1, "weights-int8+f16": 1.4,
             "weights-int8+int8-act": 1.5, "int8-compute": 2}
    lines = [
        "**Estimates, not measurements**: per-query cycles of the aarch64 binaries under qemu-user's",
        "Cortex-A72 (Pi 4, costed at 1.8 GHz with `llvm-mca -mcpu=cortex-a72`) and Cortex-A76 (Pi 5,",
        "2.4 GHz, `llvm-mca -mcpu=neoverse-n1`) CPU models, from the difference between runs with N and",
        "N+K queries (method and set-up: `tools/benchmarks/arm_estimate.py`). Device = `device classify`",
        "end to end (tokenise + run + softmax + JSON line), the length-bucket race off",
        "(`DEVICE_SYMBOLIC_ONLY=1`: symbolic plan; `DEVICE_FIXED_PLANS=1`: fixed-length plans, padded",
        "to 8/16/32/64 tokens); onnxruntime = the same ONNX file on the same token ids, model + numpy",
        "softmax, 1 thread, under an arm64 python3.11. device / onnxruntime uses the faster device",
        "plan (the one the race should pick). Compute limit = MACs per query / (MACs per cycle x clock):",
        "A72 4 f32 or 8 int8 MACs/cycle (`smull`/`smlal` of 8 byte pairs into i16, then `sadalp`, one",
        "multiply per cycle), A76 8 f32 or 32 int8 (`sdot`) MACs/cycle.",
        "",
        "Error of the method: hot NEON loops within ~10-25 %; a whole query is a **lower bound** (no",
        "cache misses, memory bandwidth or branch mispredictions are modelled), 1.3-2x under for",
        "models that stream their weights from memory. Ratios (device vs onnxruntime, variant vs",
        "variant, Pi 4 vs Pi 5) are more trustworthy than the microseconds. Repeatability: the",
        "device's start-up count varies by ~0.1 % between identical runs (~0.25 M instructions of",
        "~190 M on the tiny preset), so a per-query figure from K extra queries moves by about",
        "±2 % at K = 3 (the smoke run), ±1 % at K = 10; the race's timing loop, which moved it far",
        "more, is off. Two full runs of the tiny preset (K = 10) agreed within 2.5 % on every device",
        "figure and within 1.5 % on onnxruntime's 64-token ones, but onnxruntime's short-query figures",
        "moved by up to 11 % (python and onnxruntime start-up vary more): read its short-query ratios",
        "to ±0.1. onnxruntime's side is run twice and each length keeps the lower count: a run of it",
        "now and then executes tens of millions of instructions once (python's or onnxruntime's",
        "housekeeping), which the difference charges to the extra queries (one had tripled a short",
        "query's count). Code layout: qemu ends a block at every 4 KiB page, and a hot loop that crossed one",
        "was costed as two loops (the same build's int8 A72 rows moved by 12 % with where the linker",
        "put one kernel); blocks are joined across page boundaries before costing, so a rebuild moves",
        "figures by the ±1-2 % above, not by layout. For weights-int8 onnxruntime runs its own",
        "`MatMulNBits` (int8 activations, `sdot` where the core has it), the device f32 as the manifest",
        "says; so those rows also give onnxruntime asked to compute the file in f32",
        "(`session.qdq_matmulnbits_accuracy_level` 0: the device's computation) and the ratio to that.",
        "`weights-int8+int8-act` is the",
        "device's int8-activation form of the same file (a `device tune` candidate), `NAME+f16` tract's",
        "f16 transform (on the A76, which has fp16 arithmetic); their onnxruntime column is the file's.",
        "",
        "| bundle | variant | core (clock) | query | device, symbolic plan | device, fixed plans | onnxruntime | device / onnxruntime | compute limit (MACs/query) | device insns/query, llvm-mca-costed share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    cmds = set()
    def sort_key(k):
        b, v, c, ln = k
        return (b, order.get(v, 9), list(CORES).index(c), 0 if ln == "short" else 1)
    for k in sorted(rows, key=sort_key):
        b, v, core, ln = k
        cell = rows[k]
        c = CORES[core]
        sym, fix, ort = cell.get(("device", "symbolic")), cell.get(("device", "fixed")), cell.get(("onnxruntime", None))
        if ort is None and base(v) != v:
            # A device choice of a manifest variant: against onnxruntime on the same file.
            ort = rows.get((b, base(v), core, ln), {}).get(("onnxruntime", None))
        devs = [x for x in (sym, fix) if x]
        any_r = devs[0] if devs else ort
        for x in cell.values():
            cmds.add(x["command"])
        best = min(devs, key=lambda x: x["us"]) if devs else None
        ratio = f"**{best['us'] / ort['us']:.2f}x**" if best and ort else "–"
        ort_f32 = cell.get(("onnxruntime", "f32"))
        ort_s = ("~" + fmt_us(ort["us"])) if ort else "–"
        if ort_f32:
            # weights-int8: also against onnxruntime computing the same file in f32.
            ort_s += f"; f32 ~{fmt_us(ort_f32['us'])}"
            if best:
                ratio += f"; **{best['us'] / ort_f32['us']:.2f}x** its f32"
        lim, per = limit_us(any_r, core, v)
        toks = any_r.get("tokens")
        lim_s = f"{fmt_us(lim)} ({any_r['macs'] / 1e6:.1f} M, {per}/cycle)" if lim else "–"
        ins = f"{best['insns'] / 1e6:.2f} M, {best['mca_share']:.0%}" if best else "–"
        lines.append(f"| {any_r['label']} | {v} | {c['name']} / {c['board']} ({c['ghz']} GHz) | "
                     f"{'short' if ln == 'short' else 'long'}, {toks or '?'} tokens | "
                     f"{('~' + fmt_us(sym['us'])) if sym else '–'} | {('~' + fmt_us(fix['us'])) if fix else '–'} | "
                     f"{ort_s} | {ratio} | {lim_s} | {ins} |")
    lines += tune_section(results, tunes)
    cmds |= {t["command"] for t in (tunes or {}).values()}
    # calibration: onnxruntime's MiniLM-L6 float on the A72 model vs the published Pi 4 figure
    cal = [r for r in results.values() if r["side"] == "onnxruntime" and r["core"] == "a72"
           and r["variant"] == "float" and r["length"] == "short" and "minilm" in (r["label"] + r["bundle"]).lower()]
    lines.append("")
    if cal:
        r = cal[0]
        lines += [
            "**Calibration**: onnxruntime's all-MiniLM-L6-v2 float on a Pi 4, 33 ms per inference as",
            "published (shodh-memory.com, \"Running Embedding Models on Edge Devices\"; sequence length and",
            f"threads not stated). Estimated here on the A72 model, short query ({r['tokens']} tokens): "
            f"**{r['us'] / 1e3:.1f} ms**, {r['us'] / 33000:.2f} of the published figure (a lower bound, as expected).",
        ]
    else:
        lines += ["**Calibration**: not in this run (needs a MiniLM-L6 bundle: onnxruntime's MiniLM float on",
                  "the A72 model against the published 33 ms per inference on a Pi 4)."]
    lines += ["", "Made with:", "", "```sh"] + sorted(cmds) + ["```"]
    when = sorted({r["when"] for r in results.values()})
    lines += ["", f"Estimated {', '.join(when)}; onnxruntime {results_ort_version(results)}, qemu-user 7.2, LLVM {LLVM}."
              + (f" {title_note}" if title_note else "")]
    return "\n".join(lines)


def load_tunes(work):
    path = work / "arm_tune.json"
    return json.loads(path.read_text()) if path.exists() else {}


def results_ort_version(results):
    v = {r.get("ort_version") for r in results.values() if r.get("ort_version")}
    return ", ".join(sorted(v)) or host_ort_version() or "?"


# ---------------------------------------------------------------- main

def train_tiny(work, epochs):
    ckpt, ckpt_q = work / "tiny-ckpt", work / "tiny-ckpt-q"
    bf, bq = work / "tiny-float", work / "tiny-int8"
    if not (bf / "manifest.json").exists() or not (bq / "manifest.json").exists():
        if not TOOLS.exists():
            run(["cargo", "build", "--release", "-p", "tools"], cwd=ROOT)
        for d in (ckpt, ckpt_q, bf, bq):
            shutil.rmtree(d, ignore_errors=True)
        log(f"training the tiny preset on the demo data ({epochs} epochs) into {work}")
        run([TOOLS, "train", "--train", ROOT / "models/demo/train.csv", "--out", ckpt, "--preset", "tiny",
             "--epochs", epochs, "--quiet"])
        run([TOOLS, "quantize", "--model", ckpt, "--out", ckpt_q])
        run([TOOLS, "export", "--model", ckpt, "--out", bf])
        run([TOOLS, "export", "--model", ckpt_q, "--out", bq])
    return [bf, bq]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="append", default=[], help="bundle directory (repeatable); "
                   "default: the tiny preset trained on the demo data, float and int8, in WORK")
    p.add_argument("--no-build", action="store_true", help="do not cross-build the aarch64 device")
    p.add_argument("--device", default=str(DEVICE_ARM), help="the aarch64 device binary")
    p.add_argument("--cores", default="a72,a76", help="a72 (Pi 4), a76 (Pi 5)")
    p.add_argument("--variants", default=None, help="comma-separated; default: all of each bundle")
    p.add_argument("--lengths", default="short,64", help="short (~10 tokens) and/or 64")
    p.add_argument("--plans", default="symbolic,fixed", help="device plan modes: symbolic, fixed")
    p.add_argument("--device-env", action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for the device (repeatable), e.g. DEVICE_I8_DENSE=0 "
                   "for an A/B in another --work")
    p.add_argument("--step", type=int, default=0, help="K, the extra queries (default 10; 2 for "
                   "models over 100 M MACs per 64-token query)")
    p.add_argument("--mca-blocks", type=int, default=400, help="heaviest blocks costed by llvm-mca")
    p.add_argument("--no-ort", dest="ort", action="store_false", default=None, help="device side only")
    p.add_argument("--ort", dest="ort", action="store_true", help="onnxruntime side (the default)")
    p.add_argument("--smoke", action="store_true", help="CI: one variant, one core, short queries, K=3")
    p.add_argument("--tune", action="store_true", help="also run `device tune` of each bundle under each "
                   "core's qemu model and list its pick beside the table's fastest variant")
    p.add_argument("--setup-only", action="store_true", help="fetch/build the tools and stop")
    p.add_argument("--check", action="store_true", help="fetch nothing: print what is missing for "
                   "this mode on one line and exit 3, or exit 0 when all is there")
    p.add_argument("--cache", default=os.environ.get("ARM_ESTIMATE_CACHE") or
                   str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-classifier/arm-estimate"))
    p.add_argument("--work", default=str(ROOT / "runs/arm-estimate"), help="bundles, results json")
    p.add_argument("--out", default=str(ROOT / "docs/benchmarks.md"))
    p.add_argument("--section", default="pi-cores")
    p.add_argument("--report-only", action="store_true", help="rewrite the section from WORK/arm_estimate.json")
    p.add_argument("--fresh", action="store_true", help="forget earlier results in WORK/arm_estimate.json")
    p.add_argument("--keep-dumps", action="store_true")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also print (and write to WORK/profile-*.txt) the N functions with the "
                        "most instructions per query")
    a = p.parse_args()
    if a.ort is None:
        a.ort = True
    if a.smoke:
        a.cores = a.cores if a.cores != "a72,a76" else "a76"
        a.lengths = a.lengths if a.lengths != "short,64" else "short"
        a.plans = a.plans if a.plans != "symbolic,fixed" else "symbolic"
        a.step = a.step or 3
        a.mca_blocks = min(a.mca_blocks, 150)
    a.command = "tools/benchmarks/arm_estimate.py " + " ".join(shlex.quote(
        os.path.relpath(x, ROOT) if x.startswith(str(ROOT) + "/") else x) for x in sys.argv[1:])
    t_start = time.time()
    if a.check:
        missing = Tools(a.cache).missing(a.device, a.ort)
        if missing:
            print("missing: " + "; ".join(missing))
            sys.exit(3)
        print("ok")
        return

    if a.report_only:
        results = json.loads((Path(a.work) / "arm_estimate.json").read_text())
        write_section(a.out, a.section, report(results, load_tunes(Path(a.work))),
                      "Raspberry Pi 4 / Pi 5 cores (estimated)")
        log(f"rewrote section {a.section} of {a.out} from {len(results)} estimates")
        return
    if not a.no_build and not a.setup_only:
        log(f"cross-building the aarch64 device (cargo build --release --target {TARGET} -p device)")
        r = subprocess.run(["cargo", "build", "--release", "--target", TARGET, "-p", "device"], cwd=ROOT)
        if r.returncode != 0:
            sys.exit("arm_estimate: the aarch64 build failed")
    tools = Tools(a.cache)
    tools.qemu_bin = tools.qemu()
    tools.plugin_so = tools.plugin()
    tools.fakecpu_so = tools.fakecpu()
    a.coster = Coster(tools)
    if a.ort:
        tools.root, tools.py, tools.site = tools.arm_python()
        ok = subprocess.run([tools.qemu_bin, "-L", tools.root, "-E", f"LD_PRELOAD={tools.fakecpu_so}",
                             "-E", f"FAKE_CPUINFO={HERE / 'cpuinfo-a72.txt'}", "-E", f"PYTHONPATH={tools.site}",
                             tools.py, "-c", "import onnxruntime, numpy; print(onnxruntime.__version__)"],
                            capture_output=True, text=True, env=qemu_env({}))
        if ok.returncode != 0:
            sys.exit(f"arm_estimate: onnxruntime does not import under qemu:\n{ok.stderr[-2000:]}")
        a.ort_version = ok.stdout.strip()
    if a.setup_only:
        log(f"set-up done in {time.time() - t_start:.0f} s: qemu {tools.qemu_bin}, cache {tools.cache}")
        return
    if a.plans and not Path(a.device).is_file():
        sys.exit(f"arm_estimate: no aarch64 device binary at {a.device} (drop --no-build)")

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    bundles = [Path(b) for b in a.bundle] or train_tiny(work, 1 if a.smoke else 3)
    res_path = work / "arm_estimate.json"
    results = {} if a.fresh or not res_path.exists() else json.loads(res_path.read_text())
    cores = a.cores.split(",")
    lengths = a.lengths.split(",")
    plans = [x for x in a.plans.split(",") if x]
    for b in bundles:
        vs = variants(b)
        if a.variants:
            vs = variants(b, a.variants.split(","))
        if a.smoke:
            vs = vs[:1]
        for name, vfile in vs:
            for core in cores:
                if name.endswith("+f16") and core == "a72":
                    log(f"{name} skipped on the A72: it has no fp16 arithmetic")
                    continue
                before = set(results)
                measure(tools, a, b, name, vfile, core, lengths, plans, results, work)
                for key in set(results) - before:
                    if a.ort and results[key]["side"] == "onnxruntime":
                        results[key].setdefault("ort_version", a.ort_version)
                res_path.write_text(json.dumps(results, indent=1))
    tunes = load_tunes(work)
    if a.tune:
        for b in bundles:
            for core in cores:
                t = tune_under_qemu(tools, a, b, core, work)
                tunes[f"{Path(b).name}|{core}"] = t
        (work / "arm_tune.json").write_text(json.dumps(tunes, indent=1))
    body = report(results, tunes)
    write_section(a.out, a.section, body, "Raspberry Pi 4 / Pi 5 cores (estimated)")
    log(f"wrote section {a.section} of {a.out} ({len(results)} estimates) in {time.time() - t_start:.0f} s")
    print(body)


if __name__ == "__main__":
    main()
