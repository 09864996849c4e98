"""The conversion engine: load, prune, quantize, export, benchmark."""
