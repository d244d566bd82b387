import subprocess
import sys

import pytest

FAULTS = """
import resource

import torch

from livedead.allocator import keep_freed_memory


def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):  # a training step's activations: allocated, touched, freed
        block = torch.empty(64 << 20, dtype=torch.uint8)
        block[::4096] = 1
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


plain = faults()
assert keep_freed_memory()
faults()  # the heap grows to hold the block (where it fits depends on what else the heap holds)
print(plain, faults())
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_kept_memory_is_reused_instead_of_faulted_in_afresh():
    """In a fresh process: ten 64 MB blocks fault in every page each time, until freed memory is kept;
    then, once the heap has grown to hold one, none does (measured, not assumed: page faults from getrusage)."""
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True).stdout
    plain, kept = map(int, out.split())
    assert plain > 10 * 16_000 * 0.9  # 16,384 pages of 4 KiB each time
    assert kept < 16_000 / 2
