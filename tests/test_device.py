"""Device selection: auto order, explicit choices, descriptions."""

import pytest
import torch

from ml_core.errors import InputError
from ml_core.learn.device import amp_dtype, describe_device, select_device


def test_cpu_is_always_available_and_described():
    dev = select_device("cpu")
    assert dev.type == "cpu"
    n = torch.get_num_threads()
    assert describe_device(dev) == f"CPU ({n} thread{'' if n == 1 else 's'})"
    assert amp_dtype(dev) is None


def test_auto_prefers_cuda_then_mps_then_cpu():
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert select_device("auto").type == expected
    assert describe_device() == describe_device(select_device("auto"))


def test_unknown_or_unavailable_device_is_a_clear_error():
    with pytest.raises(InputError, match="Unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            select_device("cuda")
