"""A stand-in for torchvision in the Cellpose 4 peer venv (see benchmarks/peer4_env.sh).

torchvision 0.28.0's compiled ops do not load with the torch 2.13.0 CPU wheel on this
machine. Cellpose 4's network and eval path do not need torchvision; this package only lets
``import cellpose`` succeed. Its submodules define nothing, so real use fails loudly.
"""

__version__ = "0.0-stub"
