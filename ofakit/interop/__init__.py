"""Interoperability with MIT's once-for-all: its subnet configs (net.config) and its supernet checkpoints."""
