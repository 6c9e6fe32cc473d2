#!/usr/bin/env python3
"""The virtual board: a whole Debian 12 arm64 system under qemu-system-aarch64, set up the
way docs/deploy.md tells a user to set up a Raspberry Pi, then driven like one.

    qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024
      PL011 UART  = guest /dev/ttyAMA0 (udev link /dev/serial0) <-> a host pty: the "cable"
                    that tools monitor / bench / deploy --serial talk over
      virtconsole = guest /dev/hvc0, root autologin, on a unix socket: how this script
                    types commands on the board (the UART stays the service's alone)
      virtio disk = the "SD card": an ext4 image made from the cached root file system
                    (tools/board/build-image.sh) after docs/deploy.md step 2 and 3 ran into it

What it does (each step asserts; the first failure stops with a non-zero exit):
  card     on the "laptop" (a scratch directory laid out like the repo after a build),
           run docs/deploy.md's marked shell blocks vboard:card and vboard:model with R=
           the card's root: install binary, key, unit, doc; export signed; deploy --to
  boot     boot the card; on the board run the vboard:board block (useradd, daemon-reload,
           enable --now, journalctl, device classify); the service must come up by itself
  classify transcripts written into /run/edge-classifier/transcripts arrive on the host
           pty as Result frames (tools monitor --serial PTY --json), label for label what
           the x86 `device classify` gives
  bench    tools bench --serial PTY on the demo test set: every query answered, no errors,
           predictions equal x86's (latency is emulated: not asserted)
  deploy   tools deploy --serial PTY --bundle v2: the service switches to v2; a tampered
           bundle is refused and v2 keeps serving
  cuts     N power cuts: qemu SIGKILLed at a random point of a deploy (disk cache=none),
           booted again: the service is back by itself with the old or the new model, and
           tools deploy run again completes (resumed or restarted)
  kill     systemctl kill -s KILL edge-classifier: systemd restarts it, same model, same
           links, local input still flows
  end      clean poweroff; e2fsck -fn of the card is clean

Usage (the test tests/tests/virtual_board.rs and tools/board/powercut.sh call it):
  tools/board/vboard.py --bin-dir target/release \
      --device target/aarch64-unknown-linux-gnu/release/device \
      --image "$(tools/board/build-image.sh --print-dir)" --work DIR --cuts 3 [--seed S] \
      [--report FILE.json]
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T0 = time.time()
SERVICE = "edge-classifier"
INPUT = "/run/edge-classifier/transcripts"
STATE = "/var/lib/edge-classifier"
TRUST = "/etc/edge-classifier/owner.pub"


def log(msg):
    print(f"[vboard {time.time() - T0:7.1f}s] {msg}", flush=True)


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


# ---------------------------------------------------------------------------------------
# The board: qemu, its console, its UART.


class Board:
    def __init__(self, image, disk, work, cache="none"):
        self.image, self.disk, self.work, self.cache = image, disk, work, cache
        self.con_path = os.path.join(work, "console.sock")
        self.logf = open(os.path.join(work, "console.log"), "ab")
        self.buf = b""
        self.p = None

    def start(self):
        if os.path.exists(self.con_path):
            os.unlink(self.con_path)
        cmd = [
            "nice", "-n", "10", "qemu-system-aarch64",
            "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024",
            "-kernel", os.path.join(self.image, "vmlinuz"),
            "-initrd", os.path.join(self.image, "initrd.img"),
            # console=tty0: the UART carries no kernel messages, as on a Pi whose
            # cmdline.txt lost console=serial0 (docs/deploy.md step 1).
            "-append", "root=/dev/vda ro console=tty0",
            "-drive", f"file={self.disk},format=raw,if=virtio,cache={self.cache}",
            "-display", "none", "-monitor", "none",
            "-serial", "pty",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=con,path={self.con_path},server=on,wait=off",
            "-device", "virtconsole,chardev=con",
            "-nic", "none", "-no-reboot",
        ]
        self.logf.write(f"\n===== boot at {time.time() - T0:.1f}s\n".encode())
        self.t0 = time.time()
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        line = self.p.stdout.readline().decode(errors="replace")
        m = re.search(r"(/dev/pts/\d+)", line)
        check(m, f"qemu did not report its pty: {line!r}")
        self.uart = m.group(1)
        threading.Thread(target=self._drain, daemon=True).start()
        for _ in range(200):
            if os.path.exists(self.con_path):
                break
            time.sleep(0.05)
        self.con = socket.socket(socket.AF_UNIX)
        self.con.connect(self.con_path)
        self.con.settimeout(0.5)
        self.buf = b""
        return self

    def _drain(self):
        for line in self.p.stdout:
            self.logf.write(b"[qemu] " + line)

    def _read(self):
        try:
            d = self.con.recv(65536)
        except socket.timeout:
            return
        if not d:
            raise Failure("the board's console closed (qemu exited?)")
        self.logf.write(d)
        self.logf.flush()
        self.buf += d

    def expect(self, pat, timeout):
        rx = re.compile(pat.encode() if isinstance(pat, str) else pat)
        end = time.time() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                out = self.buf[:m.end()]
                self.buf = self.buf[m.end():]
                return m, out.decode(errors="replace")
            if time.time() > end:
                raise Failure(f"timeout waiting for {pat!r} on the console "
                              f"(last output: {self.buf[-300:]!r})")
            self._read()

    def send(self, s):
        self.con.sendall(s.encode())

    def login(self, timeout=300):
        """Waits for the root autologin on hvc0; returns seconds since qemu started."""
        self.expect(r"root@vboard:~# ", timeout)
        self.send("bind 'set enable-bracketed-paste off' 2>/dev/null; stty -echo; PS1=''; "
                  "sudo() { \"$@\"; }; echo READY''READY\n")
        self.expect("READYREADY\r?\n", 60)
        return time.time() - self.t0

    def sh(self, cmd, timeout=300, ok=True):
        """Runs `cmd` in the board's root shell; returns (output, exit code)."""
        tag = "__END%06d__" % random.randrange(10**6)
        self.send(f"{cmd}\necho {tag[:5]}''{tag[5:]}$?\n")
        m, out = self.expect(re.escape(tag) + r"(\d+)\r?\n", timeout)
        body = out[:out.rfind(tag)]
        body = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", body).replace("\r", "")
        rc = int(m.group(1))
        if ok:
            check(rc == 0, f"on the board: `{cmd}` exited {rc}:\n{body}")
        return body, rc

    def kill9(self):
        os.kill(self.p.pid, signal.SIGKILL)
        self.p.wait()
        self.con.close()

    def poweroff(self, timeout=120):
        self.send("systemctl poweroff\n")
        self.p.wait(timeout)
        self.con.close()


# ---------------------------------------------------------------------------------------
# docs/deploy.md: the marked blocks are the install the test runs.


def doc_block(name):
    """The ```sh block after `<!-- vboard:NAME -->` in docs/deploy.md, dedented."""
    text = open(os.path.join(REPO, "docs/deploy.md"), encoding="utf-8").read()
    m = re.search(r"<!-- vboard:%s -->[ \t]*\n([ \t]*)```sh\n(.*?)\n[ \t]*```" % re.escape(name),
                  text, re.S)
    check(m, f"docs/deploy.md has no ```sh block marked <!-- vboard:{name} -->")
    return textwrap.dedent(m.group(2))


class Laptop:
    """A scratch directory laid out like the repository after the builds docs/deploy.md
    asks for, with HOME holding ~/keys: the doc's host-side blocks run there verbatim."""

    def __init__(self, work, bin_dir, device):
        self.dir = os.path.join(work, "laptop")
        self.home = os.path.join(work, "home")
        self.bin_dir = os.path.abspath(bin_dir)
        self.tools = os.path.join(self.bin_dir, "tools")
        self.x86_device = os.path.join(self.bin_dir, "device")
        links = {
            "target/aarch64-unknown-linux-gnu/release/device": os.path.abspath(device),
            "target/release/tools": self.tools,
            "target/release/device": self.x86_device,
            "device/systemd/edge-classifier.service":
                os.path.join(REPO, "device/systemd/edge-classifier.service"),
            "docs/deploy.md": os.path.join(REPO, "docs/deploy.md"),
            "models": os.path.join(REPO, "models"),
        }
        for rel, target in links.items():
            p = os.path.join(self.dir, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            if not os.path.lexists(p):
                os.symlink(target, p)
        # demo.sh stands in for itself: what it leaves behind (runs/demo/ckpt and an
        # unsigned runs/demo/bundle) is made by prepare() below.
        stub = os.path.join(self.dir, "tools/scripts/demo.sh")
        os.makedirs(os.path.dirname(stub), exist_ok=True)
        with open(stub, "w") as f:
            f.write("#!/bin/sh\n# stand-in: runs/demo/ckpt and runs/demo/bundle exist already\n")
        os.chmod(stub, 0o755)
        os.makedirs(os.path.join(self.home, "keys"), exist_ok=True)
        self.env = dict(os.environ, HOME=self.home,
                        PATH=self.bin_dir + os.pathsep + os.environ.get("PATH", ""))

    def path(self, rel):
        return os.path.join(self.dir, rel)

    def run(self, args, ok=True, **kw):
        r = subprocess.run(args, cwd=self.dir, env=self.env, capture_output=True, text=True, **kw)
        if ok:
            check(r.returncode == 0, f"{' '.join(map(str, args))} exited {r.returncode}:\n"
                                     f"{r.stdout}\n{r.stderr}")
        return r

    def tools_json(self, args, ok=True, timeout=600):
        r = self.run([self.tools] + args, ok=ok, timeout=timeout)
        line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "null"
        return json.loads(line), r

    def bash(self, script):
        """Runs a shell script as the doc's reader would (sudo is a no-op: we are root)."""
        pre = 'set -euo pipefail\nsudo() { "$@"; }\n'
        return self.run(["bash", "-c", pre + script])

    def prepare(self):
        """keygen (docs/deploy.md section 1), what demo.sh leaves (a trained checkpoint and
        its unsigned bundle), and the later bundles: v2 and a tampered copy of v2."""
        keys = os.path.join(self.home, "keys")
        if not os.path.exists(os.path.join(keys, "owner.pub")):
            self.bash("tools keygen --out ~/keys/owner")
        ckpt = self.path("runs/demo/ckpt")
        if not os.path.exists(os.path.join(ckpt, "config.json")):
            # A small model (d=32, 1 layer, 800-token vocabulary: a ~180 kB bundle, demo
            # test accuracy ~0.75): the emulated PL011 moves only ~6-10 kB/s from the host
            # into the board, so a 2.5 MB tiny-preset bundle would take minutes per deploy.
            self.run([self.tools, "train", "--train", "models/demo/train.csv", "--out",
                      "runs/demo/ckpt", "--epochs", "8", "--hidden", "32", "--layers", "1",
                      "--heads", "2", "--ffn", "64", "--pool-dim", "32", "--vocab-size", "800",
                      "--quiet"])
        self.run([self.tools, "export", "--model", "runs/demo/ckpt", "--out", "runs/demo/bundle"])

    def variants(self, v1):
        """v2: v1 renamed and signed again (another manifest and transfer, the same model);
        tampered: v2 with a label renamed after signing."""
        name = json.load(open(os.path.join(v1, "manifest.json")))["name"]
        out = {}
        for tag in ["v2", "tampered"]:
            d = self.path(f"runs/{tag}")
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(v1, d)
            mpath = os.path.join(d, "manifest.json")
            m = json.load(open(mpath))
            m["name"] = f"{name}-v2"
            json.dump(m, open(mpath, "w"), indent=2)
            self.bash(f"tools sign --bundle {d} --key ~/keys/owner.key")
            if tag == "tampered":
                m = json.load(open(mpath))
                labels = m.get("labels")
                check(isinstance(labels, list) and labels, "manifest has no labels list")
                labels[0] = labels[0] + "-renamed"
                json.dump(m, open(mpath, "w"), indent=2)
            out[tag] = d
        return name, f"{name}-v2", out["v2"], out["tampered"]


def make_card(laptop, image, work):
    """The SD card: the cached root file system (hard-linked, never written), docs/deploy.md
    steps 2 and 3 run into it, packed as an ext4 image."""
    card = os.path.join(work, "card")
    shutil.rmtree(card, ignore_errors=True)
    r = subprocess.run(["cp", "-al", os.path.join(image, "rootfs"), card], capture_output=True)
    if r.returncode != 0:
        shutil.rmtree(card, ignore_errors=True)
        subprocess.run(["cp", "-a", os.path.join(image, "rootfs"), card], check=True)
    install = doc_block("card")
    model = doc_block("model")
    check(re.search(r"^R=/media/\$USER/rootfs$", install, re.M),
          "docs/deploy.md vboard:card no longer sets R=/media/$USER/rootfs")
    install = re.sub(r"^R=/media/\$USER/rootfs$", f"R={card}", install, flags=re.M)
    log("card: docs/deploy.md step 2 (vboard:card) and step 3 (vboard:model) with R=" + card)
    laptop.bash(install + "\n" + model)
    # Test payload, not part of the install: the transcripts the board will "hear".
    return card


def pack_card(card, disk):
    if os.path.exists(disk):
        os.unlink(disk)
    t = time.time()
    subprocess.run(["nice", "-n", "10", "mkfs.ext4", "-q", "-L", "vboard-root", "-d", card,
                    disk, "2G"], check=True)
    log(f"card packed into {disk} (mkfs.ext4 -d) in {time.time() - t:.1f} s")


# ---------------------------------------------------------------------------------------
# The scenario.


class Run:
    def __init__(self, a):
        self.a = a
        self.work = os.path.abspath(a.work)
        os.makedirs(self.work, exist_ok=True)
        self.rng = random.Random(a.seed)
        self.report = {"seed": a.seed, "timings": {}, "cuts": []}
        self.laptop = Laptop(self.work, a.bin_dir, a.device)
        self.board = None

    def timing(self, key, seconds):
        self.report["timings"][key] = round(seconds, 1)

    # -- host-side helpers over the UART ------------------------------------------------
    def classify_over_uart(self, text="turn on the lights", wait=120):
        """tools classify --serial: (model name, label); retried while the service starts."""
        end = time.time() + wait
        last = None
        while time.time() < end:
            r = self.laptop.run([self.laptop.tools, "classify", "--serial", self.board.uart,
                                 "--json", "--timeout-ms", "5000", text], ok=False, timeout=120)
            if r.returncode == 0:
                v = json.loads(r.stdout.strip().splitlines()[-1])
                return v["model"], v["label"]
            last = r.stderr.strip()
            time.sleep(2)
        raise Failure(f"no answer over the UART within {wait} s: {last}")

    def x86_labels(self, bundle, texts):
        r = self.laptop.run([self.laptop.x86_device, "classify", "--bundle", bundle],
                            input="".join(t + "\n" for t in texts))
        return [json.loads(l)["label"] for l in r.stdout.splitlines()]

    def board_current(self):
        out, _ = self.board.sh(f"readlink {STATE}/current; readlink {STATE}/previous || true")
        return out.split()

    def wait_service(self, timeout=180):
        """Until systemd reports the service active and its model loaded (journal)."""
        end = time.time() + timeout
        while time.time() < end:
            out, rc = self.board.sh(f"systemctl is-active {SERVICE}", ok=False)
            if out.strip() == "active":
                return
            check(out.strip() != "failed" or time.time() < end,
                  f"{SERVICE} failed:\n" + self.board.sh(
                      f"systemctl status --no-pager {SERVICE}; journalctl -b -u {SERVICE} "
                      "--no-pager | tail -30", ok=False)[0])
            time.sleep(2)
        raise Failure(f"{SERVICE} not active after {timeout} s:\n" + self.board.sh(
            f"systemctl status --no-pager {SERVICE}; journalctl -b -u {SERVICE} --no-pager "
            "| tail -30", ok=False)[0])

    def boot(self, what):
        self.board = Board(self.a.image, self.disk, self.work).start()
        t = self.board.login()
        log(f"{what}: root shell {t:.1f} s after qemu started (UART on {self.board.uart})")
        return t

    # -- steps ----------------------------------------------------------------------------
    def step_card(self):
        t = time.time()
        self.laptop.prepare()
        self.v1_name = json.load(open(self.laptop.path("runs/demo/bundle/manifest.json")))["name"]
        card = make_card(self.laptop, self.a.image, self.work)
        self.v1 = self.laptop.path("runs/demo/bundle")
        check(os.path.exists(os.path.join(self.v1, "manifest.sig")),
              "docs/deploy.md step 3 did not leave a signed runs/demo/bundle")
        self.v1_name, self.v2_name, self.v2, self.tampered = self.laptop.variants(self.v1)
        texts = [t for t, _ in read_csv(os.path.join(REPO, "models/demo/test.csv"))]
        self.transcripts = texts[: self.a.transcripts]
        with open(os.path.join(card, "root/transcripts.txt"), "w", encoding="utf-8") as f:
            f.write("".join(t + "\n" for t in self.transcripts))
        self.disk = os.path.join(self.work, "card.img")
        pack_card(card, self.disk)
        shutil.rmtree(card)
        self.timing("card_s", time.time() - t)

    def step_boot(self):
        t = self.boot("first boot")
        self.timing("boot_to_shell_s", t)
        block = doc_block("board")
        log("board: docs/deploy.md step 4 (vboard:board)")
        for line in block.splitlines():
            cmd = line.split("  #")[0].strip()
            if not cmd or cmd.startswith("#"):
                continue
            if cmd.startswith("journalctl") and " -f" in cmd:
                # A reader watches the log; the test waits for the service, then reads it.
                self.wait_service()
                cmd = cmd.replace(" -f", " --no-pager -b")
            loaded = r"bundle \S+ name .*current; signed by trusted key"
            end = time.time() + 180
            while True:
                out, _ = self.board.sh(cmd, timeout=300)
                if not cmd.startswith("journalctl") or re.search(loaded, out):
                    break
                check(time.time() < end, "the journal does not show the signed current "
                                         f"bundle loaded:\n{out}")
                time.sleep(3)
            log(f"board$ {cmd}\n" + textwrap.indent(out.strip()[-1500:], "    "))
            if cmd.startswith("device classify"):
                check('"label"' in out, "device classify on the board printed no label")
        self.wait_service()
        self.timing("first_boot_to_service_s", time.time() - self.board.t0)

    def step_classify(self):
        t = time.time()
        expect = self.x86_labels(self.v1, self.transcripts)
        mon = subprocess.Popen([self.laptop.tools, "monitor", "--serial", self.board.uart,
                                "--json", "--count", str(len(self.transcripts)),
                                "--timeout-ms", "10000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        results, info = [], None
        try:
            line = mon.stdout.readline()  # the handshake's info record comes first
            check(line, f"tools monitor printed nothing: {mon.stderr.read() if mon.poll() is not None else ''}")
            info = json.loads(line)
            check(info.get("kind") == "info" and info.get("model") == self.v1_name,
                  f"monitor's handshake: {info}")
            self.board.sh(f"cat /root/transcripts.txt > {INPUT}", timeout=120)
            deadline = time.time() + 300
            while len(results) < len(self.transcripts) and time.time() < deadline:
                line = mon.stdout.readline()
                if not line:
                    break
                v = json.loads(line)
                if v.get("kind") == "result":
                    results.append(v)
        finally:
            if mon.poll() is None:
                mon.kill()
            mon.wait()
        check(len(results) == len(self.transcripts),
              f"{len(results)} of {len(self.transcripts)} transcripts arrived as Result frames")
        got = [r["label"] for r in sorted(results, key=lambda r: r["seq"])]
        seqs = sorted(r["seq"] for r in results)
        check(seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"local seq numbers: {seqs}")
        diff = [i for i, (g, e) in enumerate(zip(got, expect)) if g != e]
        check(not diff, f"labels differ from x86 at {diff[:10]}: {[(got[i], expect[i]) for i in diff[:5]]}")
        log(f"classify: {len(results)} transcripts from {INPUT} arrived on the host pty as "
            f"Result frames, labels equal x86's")
        self.timing("classify_s", time.time() - t)

    def step_bench(self):
        t = time.time()
        data = os.path.join(REPO, "models/demo/test.csv")
        preds = os.path.join(self.work, "bench_predictions.jsonl")
        j, r = self.laptop.tools_json(["bench", "--serial", self.board.uart, "--data", data,
                                       "--json", "--timeout-ms", "10000", "--predictions", preds,
                                       "--histogram", os.path.join(self.work, "bench.svg")])
        rows = read_csv(data)
        check(j["n"] == len(rows) and j["answered"] == j["n"] and j["errors"] == 0,
              f"bench over the UART: {j}")
        inproc, _ = self.laptop.tools_json(["bench", "--bundle", self.v1, "--data", data, "--json",
                                            "--histogram", os.path.join(self.work, "bench-inproc.svg")])
        check(j["accuracy"] == inproc["accuracy"],
              f"accuracy over the UART {j['accuracy']} != in-process {inproc['accuracy']}")
        samples = [json.loads(l) for l in open(preds)]
        expect = self.x86_labels(self.v1, [t for t, _ in rows])
        got = [s.get("label") for s in samples]
        check(got == expect, "bench predictions differ from x86's: "
              f"{[(i, g, e) for i, (g, e) in enumerate(zip(got, expect)) if g != e][:5]}")
        log(f"bench: {j['answered']}/{j['n']} answered, 0 errors, accuracy {j['accuracy']:.4f} "
            f"= in-process, labels = x86; emulated RTT p50 {j['rtt_p50_us'] / 1000:.1f} ms, "
            f"device p50 {j['device_p50_us'] / 1000:.1f} ms")
        self.report["bench"] = {k: j[k] for k in ["n", "answered", "errors", "accuracy",
                                                   "rtt_p50_us", "device_p50_us"]}
        self.timing("bench_s", time.time() - t)

    def deploy(self, bundle, ok=True, timeout=900):
        return self.laptop.tools_json(["deploy", "--serial", self.board.uart, "--bundle", bundle,
                                       "--timeout-ms", "5000"], ok=ok, timeout=timeout)

    def step_deploy(self):
        t = time.time()
        before = self.board_current()
        j, r = self.deploy(self.v2)
        self.deploy_s = time.time() - t
        check(j["model_name"] == self.v2_name and j["was"] == self.v1_name, f"deploy: {j}")
        model, _ = self.classify_over_uart()
        check(model == self.v2_name, f"after the deploy the UART answers with {model}")
        after = self.board_current()
        check(after[1] == before[0] and after[0] != before[0], f"links {before} -> {after}")
        log(f"deploy over the UART: {j['total_bytes']} bytes in {j['transfer_s']:.1f} s "
            f"({j['bytes_per_s'] / 1000:.1f} kB/s emulated), commit {j['commit_s']:.1f} s; "
            f"now serving {model}; current {after[0]}, previous {after[1]}")
        self.report["deploy"] = {k: j[k] for k in ["total_bytes", "transfer_s", "commit_s"]}
        self.timing("deploy_s", self.deploy_s)
        # Tampered: refused, v2 keeps serving.
        j, r = self.deploy(self.tampered, ok=False)
        check(r.returncode != 0, f"a tampered bundle was accepted: {r.stdout}")
        reason = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
        check("signature" in r.stderr, f"refusal does not name the signature: {r.stderr}")
        model, _ = self.classify_over_uart()
        check(model == self.v2_name, f"after the refused deploy the UART answers with {model}")
        check(self.board_current() == after, "links changed by a refused deploy")
        log(f"tampered bundle refused ({reason}); {model} still serving")

    def step_cuts(self):
        names = {self.v1: self.v1_name, self.v2: self.v2_name}
        current = self.v2
        for i in range(1, self.a.cuts + 1):
            target = self.v1 if current == self.v2 else self.v2
            old, new = names[current], names[target]
            deploy_s = self.deploy_s
            delay = self.rng.uniform(0.02, 1.0) * deploy_s
            proc = subprocess.Popen([self.laptop.tools, "deploy", "--serial", self.board.uart,
                                     "--bundle", target, "--timeout-ms", "5000"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(delay)
            finished = proc.poll() is not None
            self.board.kill9()
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            host_saw = "completed" if finished and proc.returncode == 0 else "interrupted"
            t = self.boot(f"cut {i}/{self.a.cuts} ({delay:.1f} s into a deploy of {new})")
            t_service = time.time()
            model, _ = self.classify_over_uart(wait=240)
            back_s = time.time() - self.board.t0
            active, _ = self.board.sh(f"systemctl is-active {SERVICE}", ok=False)
            check(active.strip() == "active", f"service {active.strip()} after the cut")
            check(model in (old, new), f"after cut {i} the board serves {model!r}, "
                                       f"neither {old} nor {new}")
            ext4, _ = self.board.sh("journalctl -b -k --no-pager | grep -c 'recovery complete' || true",
                                    ok=False)
            t_redeploy = time.time()
            j, r = self.deploy(target, ok=False)
            check(r.returncode == 0, f"tools deploy after cut {i} failed: {r.stderr}")
            if not j.get("resumed_from"):
                # A whole deploy again: the next cut lands within this one's duration
                # (the emulated UART's speed follows the host's load).
                self.deploy_s = time.time() - t_redeploy
            check(j.get("model_name") == new, f"redeploy after cut {i}: {j}")
            redeploy = ("resumed at byte %d" % j["resumed_from"]) if j.get("resumed_from") else (
                "already current" if j.get("already_current") else "restarted from 0")
            row = {"trial": i, "cut_after_s": round(delay, 2), "deploy_s": round(deploy_s, 1),
                   "host_deploy": host_saw, "after_boot": "new" if model == new else "old",
                   "service_back_s": round(back_s, 1), "ext4_journal_recovered": ext4.strip() != "0",
                   "redeploy": redeploy, "redeploy_json": j}
            self.report["cuts"].append(row)
            if self.a.report:  # kept up to date: a long run stopped early keeps its trials
                with open(self.a.report, "w") as f:
                    json.dump(self.report, f, indent=2)
            log(f"cut {i}: SIGKILL {delay:.1f} s into the deploy ({host_saw}); service back by "
                f"itself {back_s:.0f} s after power-on serving the {row['after_boot']} model "
                f"({model}); tools deploy again: {redeploy}")
            current = target

    def step_kill(self):
        before_links = self.board_current()
        model0, _ = self.classify_over_uart()
        out, _ = self.board.sh(f"systemctl show -p MainPID -p NRestarts {SERVICE}")
        before = dict(l.split("=", 1) for l in out.split())
        self.board.sh(f"systemctl kill -s KILL {SERVICE}")
        end = time.time() + 120
        while time.time() < end:
            out, _ = self.board.sh(f"systemctl show -p MainPID -p NRestarts -p ActiveState {SERVICE}")
            now = dict(l.split("=", 1) for l in out.split())
            if (now["ActiveState"] == "active" and now["MainPID"] not in ("0", before["MainPID"])
                    and int(now["NRestarts"]) > int(before["NRestarts"])):
                break
            time.sleep(1)
        else:
            raise Failure(f"{SERVICE} not restarted after SIGKILL: {now}")
        model, _ = self.classify_over_uart()
        check(model == model0, f"after systemctl kill: {model} (was {model0})")
        check(self.board_current() == before_links, "links changed by the kill")
        # Local input still flows after the restart.
        mon = subprocess.Popen([self.laptop.tools, "monitor", "--serial", self.board.uart, "--json",
                                "--count", "1", "--timeout-ms", "10000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        mon.stdout.readline()
        self.board.sh(f"echo 'turn off the kitchen lights' > {INPUT}")
        try:
            out, _ = mon.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            mon.kill()
            raise Failure("no Result frame for a transcript after the restart")
        check('"kind":"result"' in out.replace(" ", ""), f"monitor after restart: {out}")
        log(f"systemctl kill -s KILL: restarted by systemd (NRestarts {before['NRestarts']} -> "
            f"{now['NRestarts']}), same model {model}, same links, local input flows")

    def step_end(self):
        t = time.time()
        self.board.poweroff()
        r = subprocess.run(["e2fsck", "-fn", self.disk], capture_output=True, text=True)
        check(r.returncode == 0, f"e2fsck -fn after a clean poweroff: {r.stdout}{r.stderr}")
        log(f"clean poweroff in {time.time() - t:.1f} s; e2fsck -fn clean")

    def main(self):
        steps = [self.step_card, self.step_boot, self.step_classify]
        if not self.a.no_bench:
            steps.append(self.step_bench)
        steps += [self.step_deploy, self.step_cuts, self.step_kill, self.step_end]
        try:
            for s in steps:
                s()
        finally:
            if self.board and self.board.p and self.board.p.poll() is None:
                self.board.kill9()
            self.report["timings"]["total_s"] = round(time.time() - T0, 1)
            if self.a.report:
                with open(self.a.report, "w") as f:
                    json.dump(self.report, f, indent=2)
        print_table(self.report)


def read_csv(path):
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    head = rows[0]
    ti, li = head.index("text"), head.index("label")
    return [(r[ti], r[li]) for r in rows[1:] if r]


def print_table(report):
    cuts = report["cuts"]
    if cuts:
        print("| trial | SIGKILL after | host's deploy | model after reboot | service back (s after power-on) | tools deploy again |")
        print("|---|---|---|---|---|---|")
        for c in cuts:
            print(f"| {c['trial']} | {c['cut_after_s']:.1f} s of ~{c['deploy_s']:.0f} s | "
                  f"{c['host_deploy']} | {c['after_boot']} | {c['service_back_s']:.0f} | {c['redeploy']} |")
        old = sum(c["after_boot"] == "old" for c in cuts)
        print(f"{len(cuts)} cuts: {old} old, {len(cuts) - old} new, 0 neither; "
              f"every redeploy completed", flush=True)
    print("timings:", json.dumps(report["timings"]), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True, help="x86 tools and device (target/release)")
    ap.add_argument("--device", required=True, help="the aarch64 device binary")
    ap.add_argument("--image", required=True, help="tools/board/build-image.sh's output directory")
    ap.add_argument("--work", required=True, help="scratch directory (card image, logs)")
    ap.add_argument("--cuts", type=int, default=3, help="power cuts during deploys")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--transcripts", type=int, default=40, help="transcripts fed to the input")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--report", help="write the outcome as JSON")
    a = ap.parse_args()
    log(f"seed {a.seed}; work {a.work}; console log {a.work}/console.log")
    try:
        Run(a).main()
    except Failure as e:
        log(f"FAILED: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
