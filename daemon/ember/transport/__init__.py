"""Bytes in, bytes out: framing, stdio and socket connections. Knows nothing of methods or models."""
