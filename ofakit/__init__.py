"""ofakit: a hardware-aware once-for-all toolkit.

Train one elastic supernet, then pull out, for each target device, the subnet that is most accurate under a latency
budget (Cai et al., "Once-for-All: Train One Network and Specialize it for Efficient Deployment", ICLR 2020).

Importing this package is cheap: it never imports torch. Modules that run networks import it themselves.
"""
from ofakit.arch import ArchConfig
from ofakit.errors import OfakitError

__version__ = "0.1.0"

__all__ = ["ArchConfig", "OfakitError", "__version__"]
