"""The `ofakit` command: a thin layer that turns argv into library calls."""
