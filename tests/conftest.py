"""Test setup: 8 fake CPU devices for JAX (must happen before the backend starts), float32 matmuls, and the
jaxtyping import hook that checks every swapjax annotation at run time (beartype)."""

import os
import pathlib

# Tests compile hundreds of tiny programs and run each for milliseconds: XLA's CPU backend without LLVM's
# optimisation passes compiles them about a quarter faster (measured on tests/models: 80 vs 108 s) and computes
# the same values (no fast-math either way). Production and the benchmarks keep the default level.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " " + TEST_XLA_FLAGS
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the whole session, this process and every child it starts (train.py,
# sample.py, ...): a program compiled once (the same tiny model in another test, another Engine, another process)
# is read back instead of compiled again. In the git-ignored .cache/; JAX keys entries by program, jax version and
# flags, so a stale entry is never used. Point JAX_COMPILATION_CACHE_DIR elsewhere to time a cold run.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(pathlib.Path(__file__).resolve().parents[1] / ".cache" / "jax_test_compilation_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_default_matmul_precision", "highest")

# Every swapjax function and dataclass imported from here on is checked against its annotations (jaxtyping shapes
# and dtypes, through beartype) on each call: an annotation that lies fails the suite (STYLE.md, "Checked shapes").
# Installed before any swapjax import and never uninstalled, so modules imported lazily by the tests are checked too.
# PEP 484's numeric tower: an int is a valid `float` (fps=24), as every static checker reads the annotations.
from jaxtyping import install_import_hook  # noqa: E402

install_import_hook("swapjax", "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests draw the same examples on every run (CI must not pass or fail by chance); run them with
# `--hypothesis-profile=explore` to search new examples locally.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("ci")


def pytest_configure(config):
    # beartype warns once per `typing.Callable` / `typing.Iterator` hint it wraps (PEP 585 deprecations); the hints
    # are checked all the same, so the warnings are noise in every test report.
    config.addinivalue_line("filterwarnings", "ignore::beartype.roar.BeartypeDecorHintPep585DeprecationWarning")


@pytest.fixture
def unchecked():
    """Turns the annotation checks off for one test: for tests of a function's own validation, whose bad input
    must reach the message users see (production runs without the hook). Everything else stays checked."""
    import jaxtyping

    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", False)


def pytest_collection_modifyitems(config, items):
    """Files with a `slow` test run first: the two workers (`-n 2 --dist loadfile`, pyproject.toml) take files in
    this order, so the long ones start at once and the short ones fill in around them, instead of one long file
    running alone at the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: collection order otherwise
