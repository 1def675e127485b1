"""``python -m cellseg_bridge.cli``: the ``cellseg`` command (what the Fiji scripts run, see ``cellseg fiji install``)."""

from cellseg_bridge.cli.main import main

if __name__ == "__main__":  # pragma: no cover
    main()
