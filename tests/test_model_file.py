"""Model files: exact round trips, and opening one never runs code (not even an old-format one)."""

import builtins
import collections
import math
import pickle

import numpy as np
import pytest
import torch

from defectkit.data import MVTecCategory, make_demo_dataset
from defectkit.models import PatchCore, load_model
from defectkit.utils.model_file import (
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    check_format,
    read_model_file,
    write_model_file,
)

torch.set_num_threads(1)


class CreatesAFile:
    """What an attacker pickles: unpickling it calls ``open(marker, "w")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def every_type_payload():
    gen = torch.Generator().manual_seed(0)
    return {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "params": {"backbone": "efficientnet_lite0", "strides": (8, 16), "cache_dir": None, "flag": True, "big": 2**70},
        "fit_info": {
            "train_seconds": 1.25,
            "neg_zero": -0.0,
            "specials": [math.nan, math.inf, -math.inf],
            "curve": [{"epoch": 1, "loss": 0.5, "val": {"score": 0.9}}, {"epoch": 2, "loss": math.nan}],
            "name": "bottle \u2013 \u00e9",
            "nothing": None,
            "empty_dict": {},
            "empty_list": [],
            "empty_tuple": (),
            "np_float": np.float64(0.1),
            "np_int": np.int64(-3),
        },
        "state": {
            "float32": torch.randn(5, 4, generator=gen),
            "float16": torch.randn(3, generator=gen).half(),
            "bfloat16": torch.randn(2, 2, generator=gen).bfloat16(),
            "float64": torch.randn(2, generator=gen).double(),
            "int64": torch.arange(-5, 5),
            "bool": torch.tensor([True, False, True]),
            "scalar": torch.tensor(7),
            "empty": torch.empty(0, 3),
            "view": torch.arange(12)[3:7],
            "transposed": torch.arange(6.0).reshape(2, 3).t(),
            "strides": {8: torch.ones(2), 16: torch.zeros(3)},
            "feature_stats": {8: (torch.full((4,), 0.5), torch.full((4,), 2.0))},
            "channels": (24, 40),
            "numpy": np.arange(6, dtype=np.float32).reshape(2, 3),
            "numpy_bool": np.array([True, False]),
            "big_endian": np.arange(3, dtype=">i4"),
            "mixed": {"1": "str key", 1: "int key"},
            "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
            "nested": [[{"t": torch.ones(1)}], ({"x": None},)],
        },
    }


def assert_identical(a, b, where="payload"):
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(
            a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)
        ), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), where
    elif isinstance(a, dict):
        assert list(a) == list(b) and [type(k) for k in a] == [type(k) for k in b], where
        for k in a:
            assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    elif isinstance(a, float):
        assert a == b and math.copysign(1, a) == math.copysign(1, b), where
    else:
        assert a == b, where


def test_round_trip_keeps_every_supported_type_exactly(tmp_path):
    payload = every_type_payload()
    path = write_model_file(tmp_path / "m.pt", payload)
    assert path == tmp_path / "m.pt"
    assert not path.read_bytes().startswith(b"PK")  # a safetensors file, not a torch archive
    back = read_model_file(path)
    assert_identical(payload, back)
    assert isinstance(back["state"]["numpy"], np.ndarray) and back["state"]["big_endian"].dtype == np.dtype(">i4")
    assert type(back["fit_info"]["np_float"]) is np.float64
    check_format(back, path)  # accepted as the current format


def test_any_header_length_is_read_as_a_model_file(tmp_path):
    """The safetensors header length can begin with b"\\x80" (a pickle's first byte) or any other byte."""
    first_bytes = set()
    for n in range(0, 300, 4):
        path = write_model_file(tmp_path / "m.pt", {"format": MODEL_FORMAT, "format_version": 2, "s": "x" * n})
        first_bytes.add(path.read_bytes()[0])
        assert read_model_file(path)["s"] == "x" * n
    assert 0x80 in first_bytes


def test_tensors_are_written_as_private_copies(tmp_path):
    base = torch.arange(10.0)
    write_model_file(tmp_path / "m.pt", {"a": base[:5], "b": base[5:], "same": [base, base]})
    back = read_model_file(tmp_path / "m.pt")
    assert torch.equal(back["a"], base[:5]) and torch.equal(back["b"], base[5:])
    back["same"][0][0] = 99.0  # read-back tensors are writable and independent of each other
    assert back["same"][1][0] == 0.0 and base[0] == 0.0


@pytest.mark.parametrize(
    "payload, where",
    [
        ({"state": {"recon": {"fc1": torch.nn.Linear(2, 2)}}}, "state.recon.fc1"),
        ({"fit_info": {"curve": [1, {"when": object()}]}}, r"fit_info.curve\[1\].when"),
        ({"params": {"cache_dir": __import__("pathlib").Path("/tmp")}}, "params.cache_dir"),
        ({"state": {(1, 2): 3}}, "state"),
        ({"state": {"c": torch.ones(2, dtype=torch.complex64)}}, "state.c"),
        ({"state": {"o": np.array([object()])}}, "state.o"),
    ],
)
def test_refuses_objects_that_are_not_plain_data(tmp_path, payload, where):
    with pytest.raises(TypeError, match=where):
        write_model_file(tmp_path / "m.pt", payload)
    assert not (tmp_path / "m.pt").exists()


def test_refuses_a_cycle(tmp_path):
    loop = []
    loop.append(loop)
    with pytest.raises(TypeError, match="itself"):
        write_model_file(tmp_path / "m.pt", {"loop": loop})


def test_truncated_random_and_foreign_files_raise_value_error_naming_the_path(tmp_path):
    good = write_model_file(tmp_path / "good.pt", every_type_payload()).read_bytes()
    for name, data in [
        ("truncated.pt", good[: len(good) // 2]),
        ("cut_header.pt", good[:40]),
        ("short.pt", good[:5]),
        ("empty.pt", b""),
        ("random.pt", np.random.default_rng(0).bytes(4096)),
        ("text.pt", b"not a model at all"),
    ]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=name):
            read_model_file(tmp_path / name)
    import safetensors.torch

    (tmp_path / "weights.safetensors").write_bytes(safetensors.torch.save({"w": torch.ones(2)}))
    with pytest.raises(ValueError, match="weights.safetensors.*not a defectkit model"):
        read_model_file(tmp_path / "weights.safetensors")


def test_newer_format_asks_to_upgrade(tmp_path):
    path = write_model_file(tmp_path / "m.pt", {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION + 1})
    with pytest.raises(ValueError, match="newer.*upgrade defectkit"):
        check_format(read_model_file(path), path)
    with pytest.raises(ValueError, match="not a defectkit model"):
        check_format({"format": "something-else", "format_version": 1}, path)


def write_like_an_attacker(path, how, payload):
    if how == "torch_zip":
        torch.save(payload, path)
    elif how == "torch_legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=4)


@pytest.mark.parametrize("how", ["torch_zip", "torch_legacy", "raw_pickle"])
def test_a_model_file_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path, how):
    marker = tmp_path / "pwned"
    payload = {
        "format": MODEL_FORMAT,
        "format_version": 1,
        "method": "patchcore",
        "params": {"image_size": 64},
        "state": {"memory_bank": CreatesAFile(marker)},
    }
    # The file is a real attack: unpickling it the old way creates the marker.
    write_like_an_attacker(tmp_path / "proof.pt", how, payload)
    with open(tmp_path / "proof.pt", "rb") as f:
        data = f.read()
    if how == "raw_pickle":
        pickle.loads(data)
    else:
        torch.load(tmp_path / "proof.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()

    path = tmp_path / "model.pt"
    write_like_an_attacker(path, how, payload)
    with pytest.raises(
        ValueError, match=r"(?s)model\.pt.*old pickle-based format or contains code.*not loaded.*Retrain"
    ):
        load_model(path, device="cpu")
    with pytest.raises(ValueError, match="defectkit train"):
        read_model_file(path)
    assert not marker.exists()


def test_old_file_with_only_plain_data_still_loads(tmp_path):
    payload = {
        "format": MODEL_FORMAT,
        "format_version": 1,
        "method": "realnet",
        "params": {"strides": (8, 16)},
        "fit_info": {"train_seconds": 2.0, "curve": [{"loss": 0.5}]},
        "state": {"feature_stats": {8: (torch.zeros(3), torch.ones(3, dtype=torch.float16))}, "idx": torch.arange(3)},
    }
    torch.save(payload, tmp_path / "old.pt")
    assert_identical(payload, read_model_file(tmp_path / "old.pt"))
    torch.save({"hello": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="foreign.pt is not a defectkit model"):
        read_model_file(tmp_path / "foreign.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "old.pt").read_bytes()[:100])
    with pytest.raises(ValueError, match="cut.pt.*truncated or corrupt"):
        read_model_file(tmp_path / "cut.pt")


def test_old_files_are_not_read_with_a_torch_whose_weights_only_load_is_unsafe(tmp_path, monkeypatch):
    torch.save({"format": MODEL_FORMAT, "format_version": 1}, tmp_path / "old.pt")
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(ValueError, match="old.pt.*torch 2.5.1.*not loaded.*retrain"):
        read_model_file(tmp_path / "old.pt")


@pytest.fixture(scope="module")
def patchcore(tmp_path_factory):
    root = make_demo_dataset(tmp_path_factory.mktemp("d"), n_train=6, n_test_good=2, n_test_defect=3, size=64)
    data = MVTecCategory(root)
    return data, PatchCore(image_size=64, device="cpu", use_cache=False).fit(data, progress=False)


def test_patchcore_round_trip_through_the_model_file(patchcore, tmp_path):
    data, model = patchcore
    path = model.save(tmp_path / "m.pt")
    assert read_model_file(path)["format_version"] == MODEL_FORMAT_VERSION
    loaded = load_model(path, device="cpu")
    assert isinstance(loaded, PatchCore)
    assert loaded.get_params() == model.get_params()
    assert loaded.fit_info_ == model.fit_info_
    assert torch.equal(loaded.memory_bank_, model.memory_bank_)
    a, ma = model.predict(data.test)
    b, mb = loaded.predict(data.test)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)


def test_patchcore_file_from_the_old_format_still_loads(patchcore, tmp_path):
    """A model saved by the previous defectkit (torch.save of the same plain payload)."""
    data, model = patchcore
    payload = read_model_file(model.save(tmp_path / "new.pt"))
    payload["format_version"] = 1
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt", device="cpu")
    assert np.array_equal(loaded.predict(data.test)[1], model.predict(data.test)[1])
