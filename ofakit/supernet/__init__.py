"""Elastic supernets: shared weights for every subnet of a space, and exact extraction of one subnet."""
from ofakit.supernet.build import Supernet, build_supernet, is_supernet
from ofakit.supernet.extract import extract_subnet

__all__ = ["Supernet", "build_supernet", "extract_subnet", "is_supernet"]
