"""Stub of the two names segment_anything imports at module level; calling them fails loudly.

segment_anything uses them only in its prompt predictor's image resizing, which Cellpose 4's
network never calls.
"""


def _unavailable(*args, **kwargs):
    raise RuntimeError("torchvision is a stub in the Cellpose 4 peer venv (benchmarks/peer4_env.sh)")


resize = _unavailable
to_pil_image = _unavailable


def __getattr__(name):
    raise AttributeError(f"torchvision is a stub in the Cellpose 4 peer venv: {name} is unavailable")
