"""Shared test setup.

Tests use one intra-op thread: the arithmetic in them is small, and on a 2-core machine
several threads per process (pytest plus DDP workers or data loaders) oversubscribe the
cores and make runs slower and less repeatable, not faster.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
