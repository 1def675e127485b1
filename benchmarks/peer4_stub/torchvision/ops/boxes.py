"""Stub of the names segment_anything's mask generator imports; calling them fails loudly.

Cellpose 4's network never runs SAM's automatic mask generator (box NMS).
"""


def _unavailable(*args, **kwargs):
    raise RuntimeError("torchvision is a stub in the Cellpose 4 peer venv (benchmarks/peer4_env.sh)")


batched_nms = _unavailable
box_area = _unavailable
