"""Shared test setup.

Tests use one intra-op thread: the arithmetic in them is small, and on a 2-core machine
several threads per process (pytest plus DDP workers or data loaders) oversubscribe the
cores and make runs slower and less repeatable, not faster.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module, restored after it (some tests time or set threads)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
