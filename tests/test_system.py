"""Process settings: keep_freed_memory stops the page-fault churn of repeated large allocations."""

from __future__ import annotations

import subprocess
import sys

import pytest

from metarl.system import keep_freed_memory

CHILD = r"""
import resource, sys
import numpy as np
from metarl.system import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "1" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):  # one "iteration": arrays of several sizes (3-40 MB) allocated together, then freed
    arrays = [np.ones(n) for n in (400_000, 700_000, 900_000, 250_000, 800_000, 5_000_000)]
    del arrays
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(tuned: bool) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, "1" if tuned else "0"], check=True, capture_output=True,
                         text=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_reuses_large_blocks_instead_of_faulting_them_in_again():
    (_, plain), (applied, tuned) = _faults(False), _faults(True)
    assert applied == "True"
    assert plain > 10_000, "glibc's defaults unmap some of the blocks and fault them in again (~70 000 here)"
    assert tuned < plain / 5


@pytest.mark.parametrize("kwargs", [dict(mmap_threshold=0), dict(trim_threshold=-5), dict(mmap_threshold=2**40),
                                    dict(trim_threshold=1.5)])
def test_keep_freed_memory_rejects_invalid_thresholds(kwargs):
    with pytest.raises(ValueError, match="positive number of bytes"):
        keep_freed_memory(**kwargs)
