"""cellseg_bridge."""
