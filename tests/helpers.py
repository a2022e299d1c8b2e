"""The helpers the test files share: array closeness, flattened pytrees, small inputs, one-line error checks.

Plain numpy / jax / flax only (no swapjax import), so any test file, fixture module or reference model can use
them without pulling in the package under test.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np


# ------------------------------------------------------------------------------------------ closeness
def _as_float64(x: Any) -> np.ndarray:
    """`x` (jax or numpy, any float dtype including bfloat16) as a float64 host array."""
    return np.asarray(jax.device_get(x)).astype(np.float64)


def rel_err(got: Any, want: Any) -> float:
    """max |got - want| / max |want|: the error relative to the reference's scale.

    A reference that is all zeros has no scale: 0.0 when `got` is all zeros too, else inf (never a division
    by zero, and never a small number that would pass a tolerance by accident)."""
    got, want = _as_float64(got), _as_float64(want)
    if got.shape != want.shape:
        raise ValueError(f"rel_err: shapes differ, got {got.shape} and want {want.shape}")
    err = float(np.abs(got - want).max(initial=0.0))
    scale = float(np.abs(want).max(initial=0.0))
    if scale == 0.0:
        return 0.0 if err == 0.0 else float("inf")
    return err / scale


def assert_close(got: Any, want: Any, *, rtol: float = 1e-6, atol: float = 0.0, err_msg: str = "") -> None:
    """`np.testing.assert_allclose` on host float64 copies (jax arrays and bfloat16 accepted)."""
    np.testing.assert_allclose(_as_float64(got), _as_float64(want), rtol=rtol, atol=atol, err_msg=err_msg)


def assert_rel_close(got: Any, want: Any, tol: float, what: str = "") -> None:
    """`rel_err(got, want) <= tol`, with both numbers in the message."""
    err = rel_err(got, want)
    assert err <= tol, f"{what or 'arrays'}: relative error {err:.3g} > {tol:.3g}"


# ------------------------------------------------------------------------------------------ pytrees
def _key_name(key: Any) -> str:
    """One step of a key path (dict key, sequence index, attribute, nnx path element) as text."""
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def flat(tree: Any) -> dict[str, np.ndarray]:
    """{"a/b/0/c": host array} of a pytree: nested dicts, TrainState fields, optax states, or an `nnx.State`
    (its variables' values)."""
    from flax import nnx

    if isinstance(tree, nnx.State):
        return {"/".join(map(_key_name, path)): np.asarray(jax.device_get(var.get_value()))
                for path, var in nnx.to_flat_state(tree)}
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]
    return {"/".join(map(_key_name, path)): np.asarray(x) for path, x in leaves}


def assert_same_tree(got: Any, want: Any) -> None:
    """The same leaf names and bit-identical leaves (`flat` of each)."""
    fg, fw = flat(got), flat(want)
    assert fg.keys() == fw.keys(), sorted(set(fg) ^ set(fw))
    for name in fw:
        np.testing.assert_array_equal(fg[name], fw[name], err_msg=name)


# ------------------------------------------------------------------------------------------ small inputs
def qkv(b: int, tq: int, tk: int, n: int, h: int, seed: int = 0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Standard-normal attention inputs: q `[b, tq, n, h]`, k and v `[b, tk, n, h]`."""
    ks = jax.random.split(jax.random.key(seed), 3)
    return (jax.random.normal(ks[0], (b, tq, n, h)), jax.random.normal(ks[1], (b, tk, n, h)),
            jax.random.normal(ks[2], (b, tk, n, h)))


def smooth_video(num_frames: int = 5, height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 `[F, H, W, 3]` with smooth gradients that survive H.264 almost unchanged."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    frames = [np.stack([base[c] + 30 * np.sin(xs / 9 + t / 3 + c) + 20 * np.cos(ys / 7 - t / 4)
                        for c in range(3)], axis=-1) for t in range(num_frames)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)  # [F, H, W, 3]


# ------------------------------------------------------------------------------------------ files and errors
def largest_file(folder: pathlib.Path) -> pathlib.Path:
    """The largest regular file under `folder` (a checkpoint's biggest data file)."""
    files = [p for p in pathlib.Path(folder).rglob("*") if p.is_file() and not p.is_symlink()]
    if not files:
        raise FileNotFoundError(f"no file under {folder}")
    return max(files, key=lambda p: (p.stat().st_size, str(p)))


def truncate_file(path: pathlib.Path, keep: float = 0.5) -> pathlib.Path:
    """Cuts `path` to the first `keep` of its bytes (a write that stopped half-way); returns it."""
    path = pathlib.Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def assert_one_line_error(stderr: str, *fragments: str, stdout: str = "") -> str:
    """`stderr` is exactly one line starting with `error: ` holding every fragment, and no traceback anywhere
    (stdout included); returns the line."""
    assert "Traceback" not in stdout + stderr, f"a traceback instead of one error line:\n{stderr}\n{stdout}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"want one 'error: ' line, got:\n{stderr}"
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
