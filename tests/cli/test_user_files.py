"""Every file a command reads, broken every way a file can be: one line on stderr, exit code 2, no traceback, and
nothing of the user's touched (issue 17, section 1).

Each case copies a small set of valid files (a tiny-space bundle with an accuracy predictor, a latency table and
predictor of the tiny space, an arch, a MIT net.config and latency YAML, a device file, a recipe, ...) into its own
folder, breaks one of them, runs `ofakit` in this process, and compares the folder's files before and after.
The broken forms: empty, truncated, binary, not UTF-8, a pickle whose unpickling would create a marker file, a
folder where a file is expected, a file where a folder is expected, and valid JSON/YAML of the wrong types.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ofakit.space import get_space

torch = pytest.importorskip("torch")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ofa"
MARKER = "PWNED"  # the file a payload pickle creates when something unpickles it
FOLDER = object()  # a kind's content: make a folder where the file should be


class Payload:
    """Unpickling this object opens (creates) the file `path`: proof that a reader unpickled user input."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# -- the valid files ------------------------------------------------------------------------------------------
def _tiny_table():
    from ofakit.latency.layers import distinct_layers
    from ofakit.latency.table import Entry, LatencyTable, layer_key
    from ofakit.space import get_space

    space = get_space("tiny")
    table = LatencyTable({"device": "cpu-ort", "space": "tiny", "backend": "onnxruntime", "statistic": "mean",
                          "call_overhead_ms": 0.01,
                          "reference": {"arch": space.largest().to_dict(), "ms": 1.5}})
    for r in space.resolutions:
        for i, layer in enumerate(distinct_layers(space, r)):
            table.put(r, layer_key(layer), Entry(mean=0.01 * (i + 1), std=0.001, count=5))
    return table


def _mit_yaml(resolution: int) -> str:
    from ofakit.latency.layers import distinct_layers
    from ofakit.latency.mit import mit_key
    from ofakit.space import get_space

    layers = distinct_layers(get_space("tiny"), resolution)
    pool = next(x for x in layers if x.op == "pool")
    keys = sorted({mit_key(x, "ofa", pool=pool) for x in layers})
    return "".join(f"{k}:\n  count: 5\n  mean: 0.5\n  std: 0.01\n" for k in keys)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The valid files every case starts from."""
    from ofakit.bundle import save_bundle
    from ofakit.interop.ofa_config import ofa_config_from_arch
    from ofakit.latency.estimate import LutEstimator
    from ofakit.predict.accuracy import AccuracyPredictor
    from ofakit.predict.latency import ArchFeatures, LatencyPredictor, table_fingerprint
    from ofakit.space import get_space
    from ofakit.supernet import build_supernet

    root = tmp_path_factory.mktemp("user_files")
    space = get_space("tiny")
    torch.manual_seed(0)
    save_bundle(root / "bundle", build_supernet("tiny"), dataset="digits")
    width = space.encode([space.smallest()]).shape[1]
    rng = np.random.default_rng(0)
    AccuracyPredictor("tiny", "mlp", {"w0": rng.normal(size=(8, width)), "b0": np.zeros(8),
                                      "w1": rng.normal(size=(1, 8)), "b1": np.zeros(1)},
                      meta={"layers": 2}).save(root / "bundle")
    (root / "bundle" / "accuracy_records.jsonl").write_text(
        json.dumps({"arch": space.smallest().to_dict(), "top1": 0.5}) + "\n")
    (root / "tables").mkdir()
    table = _tiny_table()
    table.save(root / "tables" / "cpu-ort_tiny.json")
    n = len(ArchFeatures(LutEstimator(table)).names)
    LatencyPredictor(table, "scale", {"mean": np.zeros(n), "std": np.ones(n), "coef": np.zeros(n),
                                      "intercept": np.zeros(1)},
                     {"device": "cpu-ort", "space": "tiny", "table": table_fingerprint(table)}
                     ).save(root / "tables" / "cpu-ort_tiny.predictor.json")
    (root / "arch.json").write_text(space.smallest().to_json(indent=2))
    (root / "net.config").write_text(json.dumps(ofa_config_from_arch(get_space("ofa-mbv3-w1.0").smallest())))
    (root / "32_lookup_table.yaml").write_text(_mit_yaml(32))
    (root / "devices").mkdir()
    (root / "devices" / "my-board.yaml").write_text(
        "name: my-board\nkind: npu\nbackend: {name: onnxruntime, threads: 2}\nreach: {via: local}\n")
    shutil.copy(Path(__file__).resolve().parents[2] / "recipes" / "tiny-digits.yaml", root / "recipe.yaml")
    shutil.copy(FIXTURES / "acc_predictor_nas.pth", root / "acc.pth")
    torch.save({"first_conv.conv.weight": torch.zeros(2, 3, 3, 3)}, root / "ckpt.pth")
    (root / "records.jsonl").write_text(json.dumps({"arch": space.smallest().to_dict(), "device": "cpu-ort",
                                                    "measured_ms": 1.0, "reference_ms": 1.5}) + "\n")
    images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    np.savez(root / "data.npz", train_images=images, train_labels=np.arange(4), val_images=images,
             val_labels=np.arange(4))
    return root


# -- how files break ------------------------------------------------------------------------------------------
def _non_utf8(valid: bytes, marker: Path) -> bytes:
    return valid[:len(valid) // 2] + "é".encode("latin-1") + valid[len(valid) // 2:]


def _torch_pickle(valid: bytes, marker: Path) -> bytes:
    """A torch.save zip whose pickle would call open(marker, "w")."""
    buf = io.BytesIO()
    torch.save({"state_dict": Payload(marker)}, buf)
    return buf.getvalue()


KINDS: dict[str, Callable[[bytes, Path], object]] = {
    "empty": lambda valid, marker: b"",
    "truncated": lambda valid, marker: valid[:len(valid) // 2],
    "binary": lambda valid, marker: bytes(range(256)) * 8,
    "non-utf8": _non_utf8,
    "pickle": lambda valid, marker: pickle.dumps(Payload(marker), protocol=2),
    "folder": lambda valid, marker: FOLDER,
}
TEXT_ONLY = ("non-utf8",)  # not a way a binary file breaks


@dataclass(frozen=True)
class Slot:
    """One file argument of one command.

    Attributes:
        file: the file that is broken, relative to the case folder.
        argv: the command, with "{c}" for the case folder.
        wrong: valid JSON/YAML (or, for binary files, valid files of the format) with the wrong shape or types:
            the content, or a function of the valid content and the marker path.
        text: whether the file is text (JSON, YAML); binary files skip the non-UTF-8 form.
        kinds: the broken forms to try (default: all).
        baseline: whether the command runs (exit 0) on the valid files; cheap commands only.
    """

    file: str
    argv: tuple[str, ...]
    wrong: tuple[bytes | Callable[[bytes, Path], bytes], ...] = ()
    text: bool = True
    kinds: tuple[str, ...] = tuple(KINDS)
    baseline: bool = False


def _st(arrays: dict) -> Callable[[bytes, Path], bytes]:
    def make(valid: bytes, marker: Path) -> bytes:
        from safetensors.numpy import save

        return save({k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})

    return make


def _torch_file(obj: object) -> Callable[[bytes, Path], bytes]:
    def make(valid: bytes, marker: Path) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    return make


def _j(data: object) -> bytes:
    return json.dumps(data).encode()


def _sub(old: str, new: str) -> Callable[[bytes, Path], bytes]:
    """The valid file with the first `old` replaced by `new`."""
    def make(valid: bytes, marker: Path) -> bytes:
        assert old.encode() in valid, old
        return valid.replace(old.encode(), new.encode(), 1)

    return make


ARCH = get_space("tiny").smallest().to_dict()
SPECIALIZE = ("specialize", "--device", "cpu-ort", "--macs", "1G", "--budget", "50", "--bundle", "{c}/bundle")
EXPORT = ("export", "--bundle", "{c}/bundle", "--arch", "{c}/arch.json", "--format", "onnx", "--out", "{c}/out/m.onnx")
ARCH_WRONG = (_j([]), _j("tiny"), _j(None), _j({"space": "tiny"}), _j({**ARCH, "resolution": "32"}),
              _j({**ARCH, "depths": "1,1"}), _j({**ARCH, "space": 3}), _j({**ARCH, "colour": 1}),
              _j({**ARCH, "kernel_sizes": [3.5]}))
BUNDLE_WRONG = (_j([]), _j({}), _j({"space": "tiny", "num_classes": "ten"}), _j({"space": 3, "num_classes": 10}),
                _j({"space": "tiny", "num_classes": 10, "metrics": []}), _j({"space": "tiny", "num_classes": -1}),
                _j({"space": "tinyy", "num_classes": 10}), _j({"space": "tiny", "num_classes": 10, "extra": 1}))
TABLE = {"format": "ofakit-latency-table", "version": 1, "meta": {"device": "cpu-ort", "space": "tiny"},
         "entries": {"32": {}}}
ENTRY_KEY = "mbconv/32x32x16-32x32x16/k3/s1/m64/se0/relu/skip1"
DEVICE = {"name": "my-board", "kind": "npu", "backend": {"name": "onnxruntime"}}

SLOTS: dict[str, Slot] = {
    "arch-info": Slot("arch.json", ("arch", "info", "{c}/arch.json"), ARCH_WRONG, baseline=True),
    "export-arch": Slot("arch.json", EXPORT, ARCH_WRONG[:4]),
    "finetune-arch": Slot("arch.json", ("finetune", "--bundle", "{c}/bundle", "--arch", "{c}/arch.json", "--data",
                                         "digits", "--out", "{c}/run"), ARCH_WRONG[:4]),
    "from-ofa": Slot("net.config", ("arch", "from-ofa", "{c}/net.config", "--space", "ofa-mbv3-w1.0",
                                     "--resolution", "224", "--out", "{c}/a.json"),
                     (_j([]), _j({"net_config": 3}), _j({"blocks": 3}), _j({"blocks": [{"conv": 3}]}),
                      _j({"net_config": {"blocks": []}, "image_size": "x"})), baseline=True),
    "bundle-info": Slot("bundle/bundle.json", ("bundle", "info", "{c}/bundle"), BUNDLE_WRONG, baseline=True),
    "specialize-bundle": Slot("bundle/bundle.json", SPECIALIZE, BUNDLE_WRONG[:4]),
    "export-bundle": Slot("bundle/bundle.json", EXPORT, BUNDLE_WRONG[:3]),
    "predictor-fit-bundle": Slot("bundle/bundle.json", ("predictor", "fit", "--bundle", "{c}/bundle", "--data",
                                                        "digits", "--samples", "12"), BUNDLE_WRONG[:3]),
    "bundle-weights": Slot("bundle/supernet.safetensors", ("bundle", "info", "{c}/bundle", "--check"),
                           (_st({"stem_conv.weight": np.zeros((2, 2))}), _torch_file({"a": torch.zeros(1)})),
                           text=False, baseline=True),
    "export-weights": Slot("bundle/supernet.safetensors", EXPORT, (_st({"x": np.zeros(1)}),), text=False),
    "accuracy-predictor": Slot("bundle/predictor.json", SPECIALIZE,
                               (_j({}), _j([]), _j({"space": "tiny", "kind": 3}), _j({"space": "tiny", "kind": "svm"}),
                                _j({"space": "tiny", "kind": "mlp", "meta": []}),
                                _j({"space": "tiny", "kind": "mlp", "meta": {"layers": "2"}}),
                                _j({"space": "tiny", "kind": "mlp", "encoding": "mine"}),
                                _j({"space": "tinyy", "kind": "mlp"})), baseline=True),
    "accuracy-predictor-arrays": Slot("bundle/predictor.safetensors", SPECIALIZE,
                                      (_st({"w0": np.zeros((3, 3))}), _st({"x": np.zeros(1)}),
                                       _st({"w0": np.zeros((8, 5)), "w1": np.zeros((1, 8))}),
                                       _torch_file({"w0": torch.zeros(2)})), text=False),
    "accuracy-records": Slot("bundle/accuracy_records.jsonl", ("predictor", "fit", "--bundle", "{c}/bundle",
                                                               "--data", "digits", "--samples", "12"),
                             kinds=("binary", "non-utf8", "pickle", "folder")),
    "latency-table": Slot("tables/cpu-ort_tiny.json", ("arch", "info", "{c}/arch.json", "--device", "cpu-ort",
                                                       "--latency-model", "lut"),
                          (_j([]), _j({**TABLE, "version": "1"}), _j({**TABLE, "meta": []}),
                           _j({**TABLE, "meta": {"device": "cpu-ort", "space": "tiny", "call_overhead_ms": "x"}}),
                           _j({**TABLE, "meta": {"device": "cpu-ort", "space": "tiny", "threads": 1.5}}),
                           _j({**TABLE, "meta": {"device": "cpu-ort", "space": "tiny",
                                                 "reference": {"arch": ARCH, "ms": "fast"}}}),
                           _j({**TABLE, "meta": {"device": "cpu-ort", "space": "tiny", "reference": {"ms": 1}}}),
                           _j({**TABLE, "entries": {"32": {ENTRY_KEY: {"mean": 1, "count": "x"}}}}),
                           _j({**TABLE, "entries": {"32": {ENTRY_KEY: {"mean": "1"}}}}),
                           _j({**TABLE, "entries": {"32": {ENTRY_KEY: {"mean": 1, "std": -1}}}}),
                           _j({**TABLE, "entries": {"32": {ENTRY_KEY: 1.0}}}),
                           _j({**TABLE, "entries": {"thirty-two": {}}}),
                           _j({**TABLE, "entries": []})), baseline=True),
    "latency-predictor": Slot("tables/cpu-ort_tiny.predictor.json",
                              ("arch", "info", "{c}/arch.json", "--device", "cpu-ort", "--latency-model", "predictor"),
                              (_j([]), _j({"format": "ofakit-latency-predictor", "version": 1}),
                               _j({"format": "ofakit-latency-predictor", "version": 1, "meta": [], "model": {}}),
                               _j({"format": "ofakit-latency-predictor", "version": 1,
                                   "meta": {"device": "cpu-ort", "space": "tiny", "table": {}},
                                   "model": {"kind": "scale", "arrays": {}}}),
                               _j({"format": "ofakit-latency-predictor", "version": 1,
                                   "meta": {"device": 1, "space": "tiny", "table": "x"},
                                   "model": {"kind": "scale", "arrays": []}})), baseline=True),
    "convert-mit": Slot("32_lookup_table.yaml", ("latency", "convert-mit", "{c}/32_lookup_table.yaml", "--device",
                                                  "cpu-ort", "--space", "tiny", "--out", "{c}/converted.json"),
                        (b"- 1\n- 2\n", b"a: 1\n", _sub("mean: 0.5", "mean: abc"), _sub("std: 0.01", "var: -1"),
                         _sub("count: 5", "count: x"), _sub("mean: 0.5", "mean: .nan"), _sub("std: 0.01", "p50: 1"),
                         _sub("\n  count: 5\n  mean: 0.5\n  std: 0.01", " 1.0"),
                         b"!!python/object:os.system {}\n"), baseline=True),
    "device-file": Slot("devices/my-board.yaml", ("devices",),
                        (b"[1, 2]\n", b"name: my-board\n", b"name: my-board\nkind: npu\nbackend: onnxruntime\n",
                         b"name: my-board\nkind: npu\nbackend: {name: onnxruntime, threads: two}\n",
                         b"name: my-board\nkind: npu\nbackend: {name: onnxruntime}\nreach: {via: ssh, port: 22}\n",
                         b"name: 3\nkind: npu\nbackend: {name: onnxruntime}\n"), baseline=True),
    "import-checkpoint": Slot("ckpt.pth", ("import-ofa", "--checkpoint", "{c}/ckpt.pth", "--space", "ofa-mbv3-w1.0",
                                           "--out", "{c}/imported"),
                              (b"notes: this is a text file\n", _torch_file([1, 2]), _torch_file({"a": 1}),
                               _torch_file({"state_dict": {"x": torch.zeros(1)}})), text=False),
    "import-checkpoint-zip-pickle": Slot("ckpt.pth", ("import-ofa", "--checkpoint", "{c}/ckpt.pth", "--space",
                                                      "ofa-mbv3-w1.0", "--out", "{c}/imported"),
                                         (_torch_pickle,), text=False, kinds=()),
    "import-predictor": Slot("acc.pth", ("import-ofa", "--predictor", "{c}/acc.pth", "--space", "ofa-mbv3-w1.0",
                                         "--out", "{c}/imported"),
                             (b"text\n", _torch_file({"0.weight": torch.zeros(2, 2)}), _torch_file({"a": "b"})),
                             text=False, baseline=True),
    "latency-records": Slot("records.jsonl", ("latency", "fit", "--device", "cpu-ort", "--space", "tiny", "--samples",
                                              "8", "--out", "{c}/tables/fitted.json", "--records", "{c}/records.jsonl"),
                            kinds=("binary", "non-utf8", "pickle", "folder")),
    "predictor-fit-data": Slot("data.npz", ("predictor", "fit", "--bundle", "{c}/bundle", "--data", "{c}/data.npz",
                                            "--samples", "12"), (_torch_file({"a": torch.zeros(1)}),), text=False),
    "train-recipe": Slot("recipe.yaml", ("train", "--recipe", "{c}/recipe.yaml", "--out", "{c}/run", "--quiet"),
                         (b"- 1\n", _sub("batch_size: 64", "batch_size: x"), _sub("epochs: 6", "epochs: x"),
                          _sub("lr: 0.2", "lr: fast"), _sub("seed: 0", "seed: 0.5"),
                          _sub("augment: false", "augment: 2"),
                          _sub("dropout: 0.0", "dropout: 0.0\ncolour: red"), _sub("space: tiny", "space: tinyy"))),
}
TRAIN = SLOTS["train-recipe"].argv[:-1]  # without --quiet
# `train` reads the recipe through the train package, which another helper is fixing; these stay strict xfails
# only while they fail
TRAIN_XFAIL: set[str] = set()


def _cases() -> list:
    cases = []
    for name, slot in SLOTS.items():
        if slot.baseline:
            cases.append(pytest.param(name, "valid", id=f"{name}-valid"))
        for kind in slot.kinds:
            if kind in TEXT_ONLY and not slot.text:
                continue
            cases.append(pytest.param(name, kind, id=f"{name}-{kind}"))
        for i in range(len(slot.wrong)):
            cases.append(pytest.param(name, f"wrong{i}", id=f"{name}-wrong{i}"))
    return [_mark(c) for c in cases]


def _mark(case):
    marks = [pytest.mark.xfail(strict=True, reason="train is being fixed by another helper")] \
        if case.id in TRAIN_XFAIL else []
    if case.values[0].startswith(("export", "finetune", "predictor-fit")):
        marks.append(pytest.mark.slow)
    return pytest.param(*case.values, id=case.id, marks=marks)


# -- running a case -------------------------------------------------------------------------------------------
def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture
def case(base, tmp_path, monkeypatch) -> Path:
    """A copy of the valid files, with the table and device folders on the search paths."""
    root = tmp_path / "case"
    shutil.copytree(base, root)
    monkeypatch.setenv("OFAKIT_TABLES_PATH", str(root / "tables"))
    monkeypatch.setenv("OFAKIT_DEVICES_PATH", str(root / "devices"))
    monkeypatch.chdir(tmp_path)  # a default output (latency_tables/...) would land here, inside the checked folder
    return root


def _break(case: Path, slot: Slot, kind: str) -> None:
    path = case / slot.file
    marker = case / MARKER
    if kind.startswith("wrong"):
        wrong = slot.wrong[int(kind[5:])]
        content = wrong(path.read_bytes(), marker) if callable(wrong) else wrong
    else:
        content = KINDS[kind](path.read_bytes(), marker)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    if content is FOLDER:
        path.mkdir()
    else:
        path.write_bytes(content)


def assert_refused(cli, tmp_path: Path, argv: list[str], *fragments: str) -> str:
    """`ofakit ARGV` exits 2 with one line naming a fragment, creates no marker and changes no file under tmp_path."""
    before = _hashes(tmp_path)
    result = cli(*argv)
    line = result.assert_user_error()
    assert any(f in line for f in fragments), f"none of {fragments} in {line!r}"
    assert not any(p.name == MARKER for p in tmp_path.rglob(MARKER)), "a pickle was unpickled"
    assert _hashes(tmp_path) == before, "a file of the user's was created, changed or removed"
    return line


@pytest.mark.parametrize(("slot_name", "kind"), _cases())
def test_broken_file_is_one_line(cli, case, tmp_path, slot_name, kind):
    slot = SLOTS[slot_name]
    argv = [a.format(c=case) for a in slot.argv]
    if kind == "valid":
        result = cli(*argv)
        assert result.code == 0, result.err
        return
    _break(case, slot, kind)
    broken = case / slot.file
    assert_refused(cli, tmp_path, argv, broken.name, str(broken.parent))


# -- a file where a folder is expected, a folder where a file is written, and train's overrides -------------------
FILE_FOR_FOLDER = {
    "bundle-info": ("bundle", ("bundle", "info", "{c}/bundle")),
    "specialize-bundle": ("bundle", SPECIALIZE),
    "devices-path": ("devices", ("devices",)),
    "tables-path": ("tables", ("arch", "info", "{c}/arch.json", "--device", "cpu-ort")),
    "export-bundle": ("bundle", EXPORT),
}


@pytest.mark.parametrize("name", FILE_FOR_FOLDER)
def test_a_file_where_a_folder_is_expected(cli, case, tmp_path, name):
    folder, argv = FILE_FOR_FOLDER[name]
    if (case / folder).is_dir():
        shutil.rmtree(case / folder)
        (case / folder).write_text("not a folder\n")
    assert_refused(cli, tmp_path, [a.format(c=case) for a in argv], folder)


OUTPUTS = {
    "specialize-out-file": (("arch.json",), (*SPECIALIZE, "--out", "{c}/arch.json")),
    "specialize-out-under-a-file": (("arch.json",), (*SPECIALIZE, "--out", "{c}/arch.json/results")),
    "specialize-out-json-is-a-folder": (("results/report.json",), (*SPECIALIZE, "--out", "{c}/results")),
    "export-out-exists": (("out.onnx",), (*EXPORT[:-1], "{c}/out.onnx")),
    "export-out-under-a-file": (("arch.json",), (*EXPORT[:-1], "{c}/arch.json/m.onnx")),
    "import-ofa-out-file": (("arch.json",), ("import-ofa", "--checkpoint", "{c}/ckpt.pth", "--space",
                                             "ofa-mbv3-w1.0", "--out", "{c}/arch.json")),
    "arch-sample-out-folder": (("tables",), ("arch", "sample", "--space", "tiny", "--out", "{c}/tables")),
    "from-ofa-out-folder": (("tables",), ("arch", "from-ofa", "{c}/net.config", "--resolution", "224", "--out",
                                          "{c}/tables")),
    "convert-mit-out-folder": (("tables",), ("latency", "convert-mit", "{c}/32_lookup_table.yaml", "--device",
                                             "cpu-ort", "--space", "tiny", "--out", "{c}/tables")),
    "train-out-file": (("arch.json",), ("train", "--recipe", "{c}/recipe.yaml", "--out", "{c}/arch.json")),
}


@pytest.mark.parametrize("name", OUTPUTS)
def test_outputs_are_checked_before_any_work(cli, case, tmp_path, monkeypatch, name):
    made, argv = OUTPUTS[name]
    if argv[0] == "specialize":  # the check comes before the search, not after it
        import ofakit.search.specialize

        def search(*args, **kwargs):
            raise AssertionError("the search ran before the output was checked")

        monkeypatch.setattr(ofakit.search.specialize, "specialize", search)
    for rel in made:
        target = case / rel
        if rel.endswith(".json") and "/" in rel:
            target.mkdir(parents=True)  # a folder where the command writes a file
        elif not target.exists():
            target.write_text("the user's own file\n")
    assert_refused(cli, tmp_path, [a.format(c=case) for a in argv], *(Path(r).name for r in made))


@pytest.mark.parametrize("assignment", ["lr=[1,", "stages.0.epochs.x=1", "batch_size=x", "colour=red"])
def test_train_set_overrides_are_one_line(cli, case, tmp_path, assignment):
    assert_refused(cli, tmp_path, [a.format(c=case) for a in TRAIN] + ["--set", assignment], "--set", "recipe")
