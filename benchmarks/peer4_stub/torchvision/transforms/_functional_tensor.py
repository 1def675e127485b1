"""Stub: Cellpose 4 imports this for its training-time augmentation only; any use fails loudly."""


def __getattr__(name):
    raise AttributeError(f"torchvision is a stub in the Cellpose 4 peer venv: {name} is unavailable")
