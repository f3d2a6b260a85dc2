"""Export: ship an extracted subnet as an ONNX, Core ML, TensorRT or torch.export artifact, checked against PyTorch,
with a JSON manifest next to it. Importing this package loads no runtime (nor torch)."""
from ofakit.export import coreml, onnx, tensorrt, torchscript  # noqa: F401  (register the formats)
from ofakit.export.formats import FORMATS, ArtifactSpec, ExportError, ExportFormat, MissingRuntimeError
from ofakit.export.manifest import manifest_path
from ofakit.export.pipeline import ExportConfig, ExportResult, export_subnet
from ofakit.export.verify import Parity

__all__ = ["FORMATS", "ArtifactSpec", "ExportConfig", "ExportError", "ExportFormat", "ExportResult",
           "MissingRuntimeError", "Parity", "export_subnet", "manifest_path"]
