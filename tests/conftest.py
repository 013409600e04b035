"""Shared fixtures: a stable KeOps cache, dtypes, and the GPU skip."""

import os
from pathlib import Path

# KeOps compiles each formula once into this cache; a stable folder keeps CI and reruns fast.
os.environ.setdefault("KEOPS_CACHE_FOLDER", str(Path(__file__).resolve().parent.parent / ".keops_cache"))
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(params=[torch.float64, torch.float32], ids=["f64", "f32"])
def dtype(request):
    return request.param


def has_cuda() -> bool:
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (restored after): tiny problems gain nothing from two, and on
    a busy machine two threads spin-wait on each other. Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
