"""The benchmarks' caches under var/ (never committed): arrays written atomically with
``rlcore.files.write_atomic``, so that two benchmarks run side by side, or one killed mid-write, never
leave a half-written file for the next reader."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from rlcore.files import write_atomic


def save_array(path: Path, array: np.ndarray) -> None:
    """np.save's .npy file, whole or not at all."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_atomic(path, buffer.getvalue())


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """np.savez's .npz file, whole or not at all."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())
