"""Test-wide settings: OpenMP threads sleep rather than spin (set before torch loads)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402  (after the environment variable above)
import torch  # noqa: E402


def _single_torch_thread():
    """Run with one torch thread, then restore the previous count. Tiny problems: one thread
    is as fast, and immune to a busy machine's oversubscription (two OpenMP threads on a
    loaded 2-core box wait on each other and run these tests many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_torch_thread():
    """One torch thread for each test (module-scoped fixtures are built before it applies).
    Use: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    yield from _single_torch_thread()


@pytest.fixture(scope="module")
def one_torch_thread_per_module():
    """One torch thread for a whole test module, its module-scoped fixtures included.
    Use: ``pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")``."""
    yield from _single_torch_thread()
