"""torch.export programs (`--format torchscript`): saved, loaded back and run with PyTorch's own outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ofakit.export.formats import ArtifactSpec
from ofakit.export.torchscript import export_program, load_program
from ofakit.export.verify import compare, random_inputs, torch_predict


@pytest.mark.parametrize("space", ["tiny", "ofa-mbv3-cifar"])
@pytest.mark.parametrize("batch", [2, None], ids=["batch2", "dynamic"])
def test_program_matches_pytorch(space, batch, tmp_path, small_archs, make_subnet):
    arch = small_archs(space, 3)[2]
    model = make_subnet(arch)
    spec = ArtifactSpec(resolution=arch.resolution, batch=batch)
    facts = export_program(model, tmp_path / "m.pt2", spec)
    assert facts["load_with"] == "torch.export.load(path).module()"
    parity = compare(torch_predict(model), load_program(tmp_path / "m.pt2", spec).predict, random_inputs(spec),
                     precision="fp32", runtime="torch.export")
    assert parity.passed and parity.max_abs_diff <= 1e-5, parity


def test_program_is_standalone(tmp_path, small_archs, make_subnet):
    """Loading needs torch only: no ofakit module is pickled into the program."""
    arch = small_archs("tiny", 1)[0]
    model = make_subnet(arch)
    export_program(model, tmp_path / "m.pt2", ArtifactSpec(resolution=arch.resolution, batch=None))
    module = torch.export.load(str(tmp_path / "m.pt2")).module()
    x = torch.randn(5, 3, arch.resolution, arch.resolution)
    np.testing.assert_allclose(module(x).detach().numpy(), model(x).detach().numpy(), atol=1e-6)
