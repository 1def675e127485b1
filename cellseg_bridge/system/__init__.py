"""What this machine has: package versions, compute device, Java and ImageJ (``cellseg info``)."""
