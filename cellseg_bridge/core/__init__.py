"""Pure array algorithms: no file I/O, no torch, no CLI."""
