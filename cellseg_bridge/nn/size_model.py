"""Style-to-diameter size model (Cellpose's ``SizeModel``): a ridge regression.

The model predicts the log of the object diameter from the network's style
vector::

    diameter = max(5, exp(A @ (style - smean) + log(diam_mean) + ymean))

Two file formats are read:

* Cellpose's size files (``size_cyto3.npy``, ``size_nucleitorch_0.npy``,
  ``<model>_size.npy``): a pickled dict ``{"A", "smean", "diam_mean", "ymean"}``
  in a ``.npy`` object array, read with the restricted unpickler of
  :func:`cellseg_bridge.io.seg_npy.safe_load_npy` (nothing but arrays and plain
  values is ever constructed);
* our own ``.npz`` with the same four arrays (:meth:`SizeModel.save`).

How the pipeline uses it (Cellpose 3.1's rule, see :mod:`cellseg_bridge.segmentation.pipeline`):
styles are computed at the model's own scale, the style estimate gives a
first diameter, the image is segmented once at that scale, and the final
diameter is the median mask diameter (``median(sqrt(area)) / (sqrt(pi) / 2)``),
falling back to ``diam_mean`` when no mask is found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellseg_bridge.errors import InputError

__all__ = ["SizeModel", "load_size_model", "fit_size_model", "MIN_DIAMETER"]

#: Predictions are clipped below at this diameter (pixels), as Cellpose.
MIN_DIAMETER = 5.0


@dataclass(frozen=True)
class SizeModel:
    """Ridge regression from style vectors to log diameter.

    Attributes
    ----------
    A : ndarray, shape (S,)
        Regression weights.
    smean : ndarray, shape (S,)
        Mean style of the training set.
    diam_mean : float
        Diameter the network was trained at (the regression is on
        ``log(d) - log(diam_mean)``).
    ymean : float
        Mean regression target.
    """

    A: np.ndarray
    smean: np.ndarray
    diam_mean: float
    ymean: float

    def __post_init__(self) -> None:
        a = np.asarray(self.A, dtype=np.float64).ravel()
        s = np.asarray(self.smean, dtype=np.float64).ravel()
        if a.shape != s.shape or a.size == 0:
            raise InputError(f"size model: A {a.shape} and smean {s.shape} must be equal-length vectors")
        values = [*a, *s, self.diam_mean, self.ymean]
        if not np.all(np.isfinite(values)) or float(self.diam_mean) <= 0:
            raise InputError("size model: values must be finite and diam_mean positive")
        object.__setattr__(self, "A", a)
        object.__setattr__(self, "smean", s)
        object.__setattr__(self, "diam_mean", float(self.diam_mean))
        object.__setattr__(self, "ymean", float(self.ymean))

    def predict(self, style: np.ndarray) -> np.ndarray | float:
        """Diameter(s) in pixels for style vector(s) ``(S,)`` or ``(N, S)``."""
        st = np.asarray(style, dtype=np.float64)
        if st.shape[-1] != self.A.size:
            raise InputError(f"size model expects styles of length {self.A.size}, got {st.shape[-1]}")
        d = np.exp((st - self.smean) @ self.A + np.log(self.diam_mean) + self.ymean)
        d = np.maximum(MIN_DIAMETER, d)
        return float(d) if d.ndim == 0 else d

    def save(self, path: str | Path) -> Path:
        """Write the model as ``.npz`` (arrays ``A``, ``smean``, ``diam_mean``, ``ymean``)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz")
        np.savez(path, A=self.A, smean=self.smean, diam_mean=self.diam_mean, ymean=self.ymean)
        return path


def _from_mapping(params: object, path: Path) -> SizeModel:
    try:
        return SizeModel(
            A=np.asarray(params["A"]),  # type: ignore[index]
            smean=np.asarray(params["smean"]),  # type: ignore[index]
            diam_mean=float(np.asarray(params["diam_mean"])),  # type: ignore[index]
            ymean=float(np.asarray(params["ymean"])),  # type: ignore[index]
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"not a size model (needs A, smean, diam_mean, ymean): {exc}", path) from exc
    except InputError as exc:
        raise InputError(exc.reason, path) from exc


def load_size_model(path: str | Path) -> SizeModel:
    """Read a Cellpose ``.npy`` size file or our ``.npz``.

    Raises
    ------
    InputError
        Missing, unreadable or unsafe file (pickles anything but arrays and
        plain values), or missing/invalid entries.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("size model file not found", path)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                params = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise InputError(f"not a readable .npz size model ({exc})", path) from exc
        return _from_mapping(params, path)
    from cellseg_bridge.io.seg_npy import safe_load_npy

    arr = safe_load_npy(path)
    params = arr.item() if isinstance(arr, np.ndarray) and arr.dtype == object and arr.ndim == 0 else arr
    if not isinstance(params, dict):
        raise InputError("not a size model: expected a pickled dict", path)
    return _from_mapping(params, path)


def fit_size_model(
    styles: np.ndarray, diameters: np.ndarray, lam: float = 1.0, *, diam_mean: float = 30.0
) -> SizeModel:
    """Fit the ridge regression of Cellpose's ``train_size``.

    Parameters
    ----------
    styles : ndarray, shape (N, S)
        Style vectors of training crops.
    diameters : ndarray, shape (N,)
        Object diameter of each crop at the scale the network saw it (pixels).
    lam : float
        L2 regularisation (Cellpose: 1).
    diam_mean : float
        The network's ``diam_mean`` (stored; predictions do not depend on it,
        ``ymean`` absorbs it).
    """
    x = np.asarray(styles, dtype=np.float64)
    d = np.asarray(diameters, dtype=np.float64).ravel()
    if x.ndim != 2 or x.shape[0] != d.size or d.size == 0:
        raise InputError(f"styles {x.shape} and diameters {d.shape} do not fit")
    if not np.all(d > 0):
        raise InputError("diameters must be positive")
    smean = x.mean(axis=0)
    xc = (x - smean).T
    y = np.log(d) - np.log(diam_mean)
    ymean = float(y.mean())
    a = np.linalg.solve(xc @ xc.T + lam * np.eye(xc.shape[0]), xc @ (y - ymean))
    return SizeModel(A=a, smean=smean, diam_mean=diam_mean, ymean=ymean)
