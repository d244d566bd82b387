"""Benchmark: one training step of the CPU U-Net, with and without each CPU speed setting.

The network of ``conf/model/unet_small.yaml`` (base 8, depth 3, batch norm) on a batch of random
160x160 tiles, SGD with momentum: forward, weighted cross-entropy, backward, step. Each variant
runs in a fresh process (the allocator setting is for the whole process), times 10 steps after
3 warm-up steps, and reads the process's user and system CPU time and page faults:

* ``plain``: contiguous memory format, glibc's allocator as it comes;
* ``channels_last``: ``model.channels_last=true``;
* ``kept_memory``: :func:`livedead.allocator.keep_freed_memory` (``callbacks.cpu_memory``);
* ``both``: the two together (the default now); ``compiled``: both, under ``torch.compile``.

    python benchmarks/cpu_step.py [--batch 25]

Prints ``RESULT channels_last_vs_plain=... kept_memory_vs_plain=... both_vs_plain=... compiled_vs_both=...``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

STEP = """
import json, resource, sys, time
import torch
import torch.nn.functional as F
from livedead.allocator import keep_freed_memory
from livedead.model.unet import UNet

variant, batch = sys.argv[1], int(sys.argv[2])
if variant in ("kept_memory", "both", "compiled"):
    keep_freed_memory()
torch.manual_seed(0)
net = UNet(base_channels=8, depth=3, batch_norm=True)
x, y = torch.randn(batch, 1, 160, 160), torch.randint(0, 3, (batch, 160, 160))
if variant in ("channels_last", "both", "compiled"):
    net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
if variant == "compiled":
    net = torch.compile(net)
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

def step():
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()

start = time.perf_counter()
for _ in range(3):
    step()
warmup = time.perf_counter() - start
before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(10):
    step()
seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rate": 10 * batch / seconds, "user": after.ru_utime - before.ru_utime,
                  "sys": after.ru_stime - before.ru_stime, "faults": after.ru_minflt - before.ru_minflt,
                  "warmup": warmup}))
"""
VARIANTS = ("plain", "channels_last", "kept_memory", "both", "compiled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=25, help="tiles a batch (the CPU default's)")
    args = parser.parse_args()
    runs = {}
    for variant in VARIANTS:
        out = subprocess.run([sys.executable, "-c", STEP, variant, str(args.batch)], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"benchmarks/cpu_step.py: the {variant} step failed:\n{out.stderr}")
        runs[variant] = r = json.loads(out.stdout.strip().splitlines()[-1])
        cpu = r["user"] + r["sys"]
        print(
            f"{variant:<14} {r['rate']:6.1f} tiles/s   CPU {cpu:5.1f} s, of which system {r['sys'] / cpu:4.0%}   "
            f"page faults {r['faults']:9,}   warm-up {r['warmup']:5.1f} s"
        )
    rate = {v: r["rate"] for v, r in runs.items()}
    print(
        f"RESULT channels_last_vs_plain={rate['channels_last'] / rate['plain']:.2f} "
        f"kept_memory_vs_plain={rate['kept_memory'] / rate['plain']:.2f} "
        f"both_vs_plain={rate['both'] / rate['plain']:.2f} "
        f"compiled_vs_both={rate['compiled'] / rate['both']:.2f}"
    )


if __name__ == "__main__":
    main()
