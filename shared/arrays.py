"""Fitted models saved as plain numpy arrays: written atomically, read without pickle."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


def write_npz(path: Path, arrays: Mapping[str, Any], *, compressed: bool = False, mode: int | None = None) -> None:
    """Write ``arrays`` to ``path`` atomically, so a reader never sees half a file; ``mode``
    for a file other processes read (mkstemp creates it 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as out:
            (np.savez_compressed if compressed else np.savez)(out, **dict(arrays))
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_npz(path: Path) -> dict[str, NDArray[Any]]:
    """Every array of an ``.npz`` file; object arrays (pickles) are refused."""
    with np.load(path, allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}
