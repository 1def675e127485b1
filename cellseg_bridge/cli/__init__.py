"""The ``cellseg`` command line, one module per command (group); :func:`main` is the console script.

Commands parse their arguments, call the library and report; nothing else lives here.
"""

from cellseg_bridge.cli.main import main

__all__ = ["main"]
