"""Tests for defectkit.benchmark: results files, summaries, parameter checks, no silent overwrite,
method variants (``name[key=value]``) and seen anomalies (supervised protocol)."""

import csv
import json
import math
import shutil

import numpy as np
import pytest

from defectkit.data import load_dataset, make_demo_dataset
from defectkit.data.seen_anomalies import draw_seen_anomalies, seen_file_names
from defectkit.engine import benchmark as benchmark_module
from defectkit.engine.benchmark import run_benchmark
from defectkit.engine.results import LEADING_COLUMNS, format_table, summarise
from defectkit.models.factory import params_for, parse_method_spec, parse_value, resolve_variants
from defectkit.models.patchcore import PatchCore
from defectkit.models.registry import register_method


@register_method
class SeenRecorder(PatchCore):
    """A stand-in supervised method: PatchCore that records the seen anomalies it is given."""

    method = "seen_recorder"
    calls = []

    def fit(self, train_data, progress=True, seen=None):
        type(self).calls.append(list(seen or []))
        return super().fit(train_data, progress)


REQUIRED = [
    "method",
    "backbone",
    "category",
    "seed",
    "image_size",
    "image_auroc",
    "pixel_auroc",
    "aupro",
    "pixel_ap",
    "train_seconds",
    "infer_ms_per_image",
    "peak_rss_mb",
]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    data = make_demo_dataset(root / "data", seed=1, n_train=5, n_test_good=2, n_test_defect=3, size=64)
    out = root / "results"
    rows = run_benchmark(
        ["patchcore"],
        [data],
        backbone="efficientnet_lite0",
        seeds=[0, 1],
        image_size=64,
        device="cpu",
        out_dir=out,
        method_params={"coreset_ratio": 0.2},
        progress=False,
        command="pytest benchmark",
    )
    return data, out, rows


def test_results_csv_has_required_leading_columns_and_one_row_per_seed(bench):
    _, out, rows = bench
    assert list(LEADING_COLUMNS) == REQUIRED
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        csv_rows = list(reader)
    assert header[: len(REQUIRED)] == REQUIRED
    assert len(csv_rows) == 2 and len(rows) == 2
    assert [r["seed"] for r in csv_rows] == ["0", "1"]
    for r in csv_rows:
        assert r["method"] == "patchcore" and r["backbone"] == "efficientnet_lite0"
        assert r["category"] == "textured_part" and r["image_size"] == "64"
        for m in ("image_auroc", "pixel_auroc", "aupro", "pixel_ap", "image_f1_max", "pixel_f1_max"):
            assert 0.0 <= float(r[m]) <= 1.0, m
        for c in ("train_seconds", "infer_ms_per_image", "peak_rss_mb", "throughput_img_s"):
            assert float(r[c]) > 0, c
        assert r["torch_version"] and r["defectkit_version"] and r["machine"] and r["timestamp"]
        assert json.loads(r["method_params"]) == {"coreset_ratio": 0.2}


def test_summary_files(bench):
    _, out, rows = bench
    text = (out / "summary.md").read_text()
    assert "| patchcore | efficientnet_lite0 | textured_part | 0 1 |" in text
    assert "pytest benchmark" in text and "seeds: 0, 1" in text and "ru_maxrss" in text
    payload = json.loads((out / "results.json").read_text())
    assert len(payload["rows"]) == 2 and payload["seeds"] == [0, 1]
    assert "train_seconds" in payload["rows"][0]["fit_info"]


def test_summary_mean_std_match_numpy(bench):
    _, _, rows = bench
    (s,) = summarise(rows)
    assert s["seeds"] == [0, 1] and s["n_seeds"] == 2
    for m in ("image_auroc", "pixel_auroc", "aupro", "train_seconds", "peak_rss_mb"):
        values = np.array([r[m] for r in rows], dtype=float)
        assert s[f"{m}_mean"] == pytest.approx(values.mean())
        assert s[f"{m}_std"] == pytest.approx(values.std(ddof=1))


def test_refuses_to_overwrite_results(bench):
    data, out, _ = bench
    before = (out / "results.csv").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        run_benchmark(["patchcore"], [data], seeds=[0], image_size=64, out_dir=out, progress=False)
    assert (out / "results.csv").read_bytes() == before


def _row(method, category, seed, auroc, cat_offset=0.0):
    return {
        "method": method,
        "backbone": "b",
        "category": category,
        "seed": seed,
        "image_auroc": auroc + cat_offset,
        "pixel_auroc": 0.9,
        "aupro": 0.8,
        "pixel_ap": float("nan"),
        "image_f1_max": 0.5,
        "pixel_f1_max": 0.4,
        "train_seconds": 10.0 + seed,
        "infer_ms_per_image": 5.0,
        "peak_rss_mb": 100.0,
    }


def test_summarise_and_format_table_by_hand():
    rows = [
        _row("pc", c, s, a, off) for c, off in (("bottle", 0.0), ("cable", -0.1)) for s, a in ((0, 0.995), (1, 0.997))
    ]
    summary = summarise(rows)
    assert [r["category"] for r in summary] == ["bottle", "cable", "mean"]
    bottle, _, mean = summary
    assert bottle["image_auroc_mean"] == pytest.approx(0.996)
    assert bottle["image_auroc_std"] == pytest.approx(np.std([0.995, 0.997], ddof=1))
    assert math.isnan(bottle["pixel_ap_mean"])
    assert mean["image_auroc_mean"] == pytest.approx(np.mean([0.995, 0.997, 0.895, 0.897]))
    table = format_table(summary)
    lines = table.splitlines()
    assert lines[0].startswith("| method | backbone | category | seeds | I-AUROC")
    assert "| pc | b | bottle | 0 1 | 99.6 ± 0.1 | 90.0 ± 0.0 | 80.0 ± 0.0 | - |" in table
    assert len(lines) == 2 + 3


def test_single_seed_std_is_zero():
    (s,) = summarise([_row("pc", "bottle", 0, 0.9)])
    assert s["image_auroc_std"] == 0.0


def test_method_params_are_checked():
    assert params_for("patchcore", {"coreset_ratio": 0.1}) == {"coreset_ratio": 0.1}
    assert params_for("patchcore", {"patchcore.num_neighbours": 3}) == {"num_neighbours": 3}
    with pytest.raises(ValueError, match="unknown parameter 'coreset_ration'"):
        params_for("patchcore", {"coreset_ration": 0.1})
    with pytest.raises(ValueError, match="own option"):
        params_for("patchcore", {"image_size": 128})


def test_bad_inputs_fail_before_any_run(tmp_path):
    with pytest.raises(KeyError, match="unknown method"):
        run_benchmark(["nosuch"], [tmp_path], seeds=[0], progress=False)
    with pytest.raises(ValueError, match="not found|neither"):
        run_benchmark(["patchcore"], [tmp_path / "missing"], seeds=[0], progress=False)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------ method variants
def test_parse_value_and_method_spec():
    assert parse_value("false") is False and parse_value("TRUE") is True and parse_value(" None ") is None
    assert parse_value("0.5") == 0.5 and parse_value("(8, 16)") == (8, 16) and parse_value("torch") == "torch"
    assert parse_method_spec("prn") == ("prn", {})
    assert parse_method_spec(" prn[use_prototypes=False, use_msa=false,use_mf=FALSE] ") == (
        "prn",
        {"use_prototypes": False, "use_msa": False, "use_mf": False},
    )
    assert parse_method_spec("prn[strides=(8,16),foreground=none,textures='a,b']") == (
        "prn",
        {"strides": (8, 16), "foreground": None, "textures": "a,b"},
    )
    for bad in ("prn[use_msa]", "prn[a=1,a=2]", "prn[x=1", "a b"):
        with pytest.raises(ValueError):
            parse_method_spec(bad)


def test_variant_params_override_and_unknown_keys_fail():
    variants = resolve_variants(["patchcore", "patchcore[coreset_ratio=0.5]", "patchcore"], {"coreset_ratio": 0.2})
    assert variants == [
        ("patchcore", "patchcore", {"coreset_ratio": 0.2}),
        ("patchcore[coreset_ratio=0.5]", "patchcore", {"coreset_ratio": 0.5}),
    ]
    with pytest.raises(ValueError, match=r"patchcore\[coreset_ration=0.5\].*unknown parameter 'coreset_ration'"):
        resolve_variants(["patchcore[coreset_ration=0.5]"])
    with pytest.raises(ValueError, match="own option"):
        resolve_variants(["patchcore[image_size=128]"])
    with pytest.raises(KeyError, match="unknown method"):
        resolve_variants(["nosuch[a=1]"])


def test_unknown_variant_key_fails_before_any_run(tmp_path):
    data = make_demo_dataset(tmp_path / "data", seed=3, n_train=2, n_test_good=1, n_test_defect=3, size=64)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown parameter 'nosuch'"):
        run_benchmark(
            ["patchcore", "patchcore[nosuch=1]"], [data], seeds=[0], image_size=64, out_dir=out, progress=False
        )
    assert not out.exists()


def test_variants_have_their_own_rows_and_summary_lines(bench, tmp_path):
    data, _, _ = bench
    out = tmp_path / "variants"
    specs = ["patchcore", "patchcore[coreset_ratio=0.5,num_neighbours=3]"]
    rows = run_benchmark(
        specs,
        [data],
        seeds=[0],
        image_size=64,
        device="cpu",
        out_dir=out,
        method_params={"coreset_ratio": 0.2},
        progress=False,
    )
    assert [r["method"] for r in rows] == ["patchcore", "patchcore"]
    assert [r["variant"] for r in rows] == specs
    assert [json.loads(r["method_params"]) for r in rows] == [
        {"coreset_ratio": 0.2},
        {"coreset_ratio": 0.5, "num_neighbours": 3},
    ]
    with open(out / "results.csv", newline="") as f:
        assert [r["variant"] for r in csv.DictReader(f)] == specs
    summary = summarise(rows)
    assert [(s["method"], s["variant"]) for s in summary] == [("patchcore", v) for v in specs]
    text = (out / "summary.md").read_text()
    assert "| patchcore | efficientnet_lite0 | textured_part | 0 |" in text
    assert "| patchcore[coreset_ratio=0.5,num_neighbours=3] | efficientnet_lite0 | textured_part | 0 |" in text
    assert "seen anomalies" not in text


def test_summary_groups_by_variant_by_hand():
    rows = [dict(_row("prn", "bottle", s, 0.9), variant=v) for v in ("prn[use_mf=False]", "prn") for s in (0, 1)]
    summary = summarise(rows)
    assert [(r["variant"], r["n_seeds"]) for r in summary] == [("prn[use_mf=False]", 2), ("prn", 2)]
    assert format_table(summary).splitlines()[2].startswith("| prn[use_mf=False] | b | bottle | 0 1 |")


# ------------------------------------------------------------------------- seen anomalies
@pytest.fixture(scope="module")
def seen_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("seen")
    return make_demo_dataset(root / "data", seed=2, n_train=4, n_test_good=2, n_test_defect=6, size=64)


def test_seen_anomalies_are_drawn_trained_on_and_removed_from_the_test_set(seen_data, tmp_path, monkeypatch):
    evaluated = []
    real_evaluate = benchmark_module.evaluate_model

    def recording_evaluate(model, data, **kw):
        evaluated.append([s.path for s in data])
        return real_evaluate(model, data, **kw)

    monkeypatch.setattr(benchmark_module, "evaluate_model", recording_evaluate)
    SeenRecorder.calls.clear()
    out = tmp_path / "out"
    rows = run_benchmark(
        ["seen_recorder"],
        [seen_data],
        seeds=[0, 1],
        image_size=64,
        device="cpu",
        out_dir=out,
        method_params={"coreset_ratio": 0.5},
        progress=False,
        seen_anomalies=2,
    )
    ds = load_dataset(seen_data)
    saved = json.loads((out / "seen_anomalies.json").read_text())
    for seed, row, seen, tested in zip((0, 1), rows, SeenRecorder.calls, evaluated):
        expected, reduced = draw_seen_anomalies(ds, 2, seed)
        assert [s.path for s in seen] == [s.path for s in expected]
        assert all(s.label == 1 and s.mask_path is not None for s in seen)
        assert tested == [s.path for s in reduced]
        assert len(tested) == len(ds.test) - 2 and not {s.path for s in seen} & set(tested)
        assert row["seen_anomalies"] == 2 and row["n_test"] == len(ds.test) - 2
        assert json.loads(row["seen_files"]) == seen_file_names(expected)
        assert saved["textured_part"][str(seed)] == seen_file_names(expected)
    text = (out / "summary.md").read_text()
    assert "seen anomalies: 2 defective test images" in text and "reduced test set" in text


def test_seen_dir_trains_on_a_folder_and_keeps_the_test_set(seen_data, tmp_path):
    folder = tmp_path / "my_defects" / "hole"
    folder.mkdir(parents=True)
    shutil.copy(seen_data / "test" / "hole" / "000.png", folder / "a.png")
    shutil.copy(seen_data / "ground_truth" / "hole" / "000_mask.png", folder / "a_mask.png")
    SeenRecorder.calls.clear()
    (row,) = run_benchmark(
        ["seen_recorder"],
        [seen_data],
        seeds=[0],
        image_size=64,
        device="cpu",
        out_dir=tmp_path / "out",
        method_params={"coreset_ratio": 0.5},
        progress=False,
        seen_dir=tmp_path / "my_defects",
    )
    assert [s.path.name for s in SeenRecorder.calls[0]] == ["a.png"]
    assert row["n_test"] == len(load_dataset(seen_data).test) and row["seen_files"] == '["hole/a.png"]'


def test_seen_anomalies_need_a_supervised_method(seen_data, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="method patchcore is unsupervised; --seen-anomalies applies to: .*prn"):
        run_benchmark(
            ["seen_recorder", "patchcore"],
            [seen_data],
            seeds=[0],
            image_size=64,
            out_dir=out,
            progress=False,
            seen_anomalies=2,
        )
    with pytest.raises(ValueError, match="only 6 defective images"):
        run_benchmark(
            ["seen_recorder"], [seen_data], seeds=[0], image_size=64, out_dir=out, progress=False, seen_anomalies=7
        )
    assert not out.exists()
