"""`python -m ofakit ...` (also what `torchrun -m ofakit` runs)."""
from ofakit.cli.main import entry

entry()
