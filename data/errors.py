"""The one exception type for user-facing data problems."""

from __future__ import annotations


class DataError(ValueError):
    """A data problem the user can fix: one line saying what is wrong, where
    (the path) and what is allowed or expected. The CLI prints ``str(e)`` and
    exits non-zero, so messages must never span lines."""

    def __init__(self, message: str):
        # Messages may embed text from outside (exception reasons, file names):
        # fold them onto one line so the CLI contract holds.
        super().__init__(" ".join(str(message).split()))


def integer_per_image(values, path, key: str, n_images: int, noun: str, context: str = ""):
    """The numpy array of a pickle's flat integer list (labels, ids) that has
    one entry per image; DataError naming the file and key otherwise."""
    import numpy as np

    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: b'{key}' is not a list of integers ({e})") from e
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{path}: b'{key}' must be a flat list of integers, got {arr.dtype} of shape {arr.shape}")
    if arr.shape[0] != n_images:
        raise DataError(f"{path}: {arr.shape[0]} {noun} for {n_images} images{context}; expected one {noun[:-1]} per image")
    return arr
