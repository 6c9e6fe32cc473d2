#!/usr/bin/env python3
"""Per-text latency of every variant, float vs int8, interleaved in one run.

Usage: variant_latency.py DATA.csv FLOAT_BUNDLE INT8_BUNDLE
Runs `device classify` (release build) over the first 300 texts of DATA.csv for the
float bundle and each int8 variant (--variant), three interleaved rounds, and prints the
median `inference_us` (tokenise + tract run + softmax, batch 1) and the ratio to float.
"""
import subprocess, json, statistics, sys, csv
texts=[r['text'] for r in csv.DictReader(open(sys.argv[1]))][:300]
inp="\n".join(texts)+"\n"
cands=[(sys.argv[2],None,'float'),(sys.argv[3],'weights-int8','weights-int8'),(sys.argv[3],'int8-compute','int8-compute')]
res={c[2]:[] for c in cands}
for rnd in range(3):
    for b,v,name in cands:
        cmd=['/work/main/target/release/device','classify','--bundle',b,'--allow-unsigned']+(['--variant',v] if v else [])
        out=subprocess.run(cmd,input=inp,capture_output=True,text=True).stdout
        us=[json.loads(l)['inference_us'] for l in out.splitlines() if l.startswith('{"text"')]
        res[name].append(statistics.median(us))
f=statistics.median(res['float'])
for k,v in res.items():
    m=statistics.median(v); print(f"{k:14} median {m:7.1f} us  (rounds {v})  ratio to float {m/f:.2f}")
