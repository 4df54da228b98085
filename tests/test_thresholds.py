"""Thresholds chosen without defects: the rules by hand, the record, a fitted model, the CLI."""

import math

import numpy as np
import pytest
import torch

from defectkit.cli import main
from defectkit.data import list_images, load_dataset, make_demo_dataset
from defectkit.deploy.thresholds import (
    PIXEL_LEVELS,
    Thresholds,
    calibrate,
    f1_image_threshold,
    f1_pixel_threshold,
    normalise,
    pixel_quantile_table,
    quantile_threshold,
    table_exceedance,
    table_threshold,
)
from defectkit.metrics import f1_max
from defectkit.models import PatchCore, load_model
from defectkit.utils.model_file import read_model_file, write_model_file

torch.set_num_threads(1)


# ---------------------------------------------------------------------------- the rules
def test_fpr_rule_by_hand():
    scores = [7, 1, 10, 3, 5, 2, 9, 4, 8, 6]  # sorted: 1..10
    # k = floor(0.1 * 10) = 1 may be flagged: halfway between s[8] = 9 (passes) and s[9] = 10
    assert quantile_threshold(scores, 0.1) == pytest.approx(9.5)
    assert quantile_threshold(scores, 0.25) == pytest.approx(8.5)  # k = 2
    assert quantile_threshold(scores, 0.15) == pytest.approx(9.5)  # k = floor(1.5) = 1
    # fewer normals than 1 / fpr: none is flagged; s[10] extrapolated from the top gap (11)
    t = quantile_threshold(scores, 0.01)
    assert t == pytest.approx(10.5)
    assert np.mean(np.asarray(scores) >= t) == 0.0


@pytest.mark.parametrize("n", [1, 2, 10, 31, 99, 100, 209, 1000])
@pytest.mark.parametrize("fpr", [0.005, 0.01, 0.05, 0.1, 0.3])
def test_fpr_rule_never_flags_more_than_the_rate(n, fpr):
    scores = np.random.default_rng(n).gamma(2.0, size=n)
    t = quantile_threshold(scores, fpr)
    flagged = int(np.sum(scores >= t))
    assert flagged == int(np.floor(fpr * n + 1e-9))  # distinct scores: exactly the allowed count
    assert flagged <= fpr * n + 1e-9


def test_fpr_rule_with_ties_flags_fewer_never_more():
    t = quantile_threshold([1.0, 2.0, 5.0, 5.0], 0.25)  # k = 1, but the two largest tie
    assert t > 5.0 and t == pytest.approx(5.0)
    assert quantile_threshold([3.0, 3.0, 3.0], 0.01) > 3.0


@pytest.mark.parametrize("fpr", [0.0, 1.0, -0.1, float("nan"), float("inf"), "0.1", True])
def test_bad_fpr_is_refused(fpr):
    with pytest.raises(ValueError, match="fpr"):
        quantile_threshold([1.0, 2.0, 3.0], fpr)


def test_scores_with_nan_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        quantile_threshold([1.0, float("nan")], 0.1)


def test_pixel_table_exact_at_levels_and_linear_between():
    pixels = np.arange(101, dtype=np.float64)  # quantile at level q is 100 q
    table = pixel_quantile_table(pixels)
    assert table == pytest.approx([100 * q for q in PIXEL_LEVELS])
    assert table_threshold(PIXEL_LEVELS, table, 0.005) == pytest.approx(99.5)  # level 0.995 is in the table
    assert table_threshold(PIXEL_LEVELS, table, 0.0015) == pytest.approx(99.85)  # between 0.998 and 0.999
    assert table_exceedance(PIXEL_LEVELS, table, [99.5, 50.0, -1.0, 101.0]) == pytest.approx([0.005, 0.5, 1.0, 0.0])


def test_f1_rule_by_hand_and_against_the_metric():
    normal, defect = [0.0, 1.0, 2.0], [1.5, 3.0]
    # candidates: 3 -> F1 2/3; 2 -> 1/2; 1.5 -> TP 2, FP 1: 4 / 5; 1 -> 4/6
    t, f1 = f1_image_threshold(normal, defect)
    assert (t, f1) == (1.5, pytest.approx(0.8))
    rng = np.random.default_rng(0)
    normal, defect = rng.normal(0, 1, 50), rng.normal(1.5, 1, 20)
    expected_f1, expected_t = f1_max(np.r_[np.zeros(50), np.ones(20)], np.r_[normal, defect])
    assert f1_image_threshold(normal, defect) == (pytest.approx(expected_t), pytest.approx(expected_f1))


def test_pixel_f1_counts_normal_pixels_through_the_table():
    rng = np.random.default_rng(1)
    normal_pixels = rng.uniform(0, 1, 20_000)
    table = pixel_quantile_table(normal_pixels)
    maps = rng.uniform(0, 1, (2, 32, 32))
    masks = np.zeros_like(maps, dtype=bool)
    masks[:, 8:16, 8:16] = True
    maps[masks] += 0.8
    t, f1 = f1_pixel_threshold(PIXEL_LEVELS, table, normal_pixels.size, maps, masks)
    # exact pixel F1-max with the normal pixels themselves
    exact_f1, exact_t = f1_max(np.r_[np.zeros(normal_pixels.size), masks.ravel()], np.r_[normal_pixels, maps.ravel()])
    assert f1 == pytest.approx(exact_f1, abs=0.01)
    assert t == pytest.approx(exact_t, abs=0.05)


def test_normalised_score_is_one_half_at_the_threshold():
    out = normalise([2.0, 4.0, 6.0, 100.0, -100.0], threshold=4.0, reference=2.0)
    assert out == pytest.approx([0.0, 0.5, 1.0, 1.0, 0.0])
    assert normalise([3.0], 3.0, 3.0) == pytest.approx([0.5])  # degenerate scale: 1


# ---------------------------------------------------------------------------- the record
def _between_kept_and_flagged(scores, fpr):
    """The fpr rule restated from the largest score down: k = floor(fpr n) flagged, halfway to the next."""
    desc = sorted((float(x) for x in scores), reverse=True)
    k = int(np.floor(fpr * len(desc) + 1e-9))
    assert k >= 1, "restated only for rates that allow a flagged normal"
    return (desc[k - 1] + desc[k]) / 2


def _normals(seed=0):
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 1.0, 200), rng.gamma(2.0, 0.5, (10, 16, 16))


def test_calibrate_and_re_set_agree():
    scores, maps = _normals()
    th = calibrate(scores, maps, fpr=0.01, source="200 normals")
    assert th.image == pytest.approx(_between_kept_and_flagged(scores, 0.01))  # 2 of 200 flagged
    assert np.sum(scores >= th.image) == 2
    assert th.pixel == pytest.approx(np.quantile(maps, 0.99))
    assert th.stats["n_normals"] == 200 and th.stats["n_normal_pixels"] == maps.size
    again = th.with_fpr(0.05)
    direct = calibrate(scores, maps, fpr=0.05, source="200 normals")
    assert again.image == pytest.approx(direct.image) and again.pixel == pytest.approx(direct.pixel)
    assert again.fpr == 0.05 and again.rule == "fpr"
    # a pixel rate of its own
    assert th.with_fpr(0.01, pixel_fpr=0.005).pixel == pytest.approx(np.quantile(maps, 0.995))
    assert th.flagged_normals() == pytest.approx(np.mean(scores >= th.image))


def test_record_round_trips_and_refuses_nan():
    scores, maps = _normals()
    th = calibrate(scores, maps, fpr=0.02, source="x")
    assert Thresholds.from_dict(th.to_dict()) == th
    bad = dict(th.to_dict(), image=float("nan"))
    with pytest.raises(ValueError, match="finite"):
        Thresholds.from_dict(bad)
    with pytest.raises(ValueError, match="finite"):
        th.with_values(image=float("inf"))


def test_colour_scale_puts_the_pixel_threshold_mid_scale():
    scores, maps = _normals()
    th = calibrate(scores, maps)
    lo, hi = th.colour_scale()
    assert lo == pytest.approx(np.median(maps)) and (lo + hi) / 2 == pytest.approx(th.pixel)


# ---------------------------------------------------------------------------- a fitted model
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("thr")
    data = make_demo_dataset(root / "data", seed=0, n_train=12, n_test_good=2, n_test_defect=3, size=64)
    model = PatchCore(
        image_size=64, device="cpu", use_cache=False, coreset_ratio=0.5, calibration_fraction=0.5, fpr=0.2
    ).fit(load_dataset(data), progress=False)
    path = root / "m.pt"
    model.save(path)
    return root, data, model, path


def test_fitted_model_flags_about_fpr_of_its_held_out_normals(fitted):
    _, data, model, _ = fitted
    names = model.fit_info_["val_image_names"]
    assert len(names) == 6 and model.fit_info_["train_images"] == 6
    held = [p for p in list_images(data / "train" / "good") if p.name in names]
    scores, _ = model.predict(held)  # re-scored independently of what fit stored
    th = model.thresholds_
    assert sorted(th.normal_scores) == pytest.approx(sorted(scores.tolist()), rel=1e-5)
    flagged = float(np.mean(scores >= th.image))
    assert abs(flagged - 0.2) <= 1 / len(held) + 1e-9
    assert th.fpr == 0.2 and th.rule == "fpr" and th.pixel is not None
    # the held-out normals score above the images the bank was built from: they are unseen
    trained_on = [p for p in list_images(data / "train" / "good") if p.name not in names]
    assert np.median(model.predict(trained_on)[0]) < np.median(scores)


def test_no_hold_out_means_no_thresholds(fitted):
    _, data, _, _ = fitted
    model = PatchCore(image_size=64, device="cpu", use_cache=False, calibration_fraction=0.0)
    model.fit(load_dataset(data), progress=False)
    assert model.thresholds_ is None and "none" in model.fit_info_["thresholds"]


def test_thresholds_round_trip_through_the_model_file(fitted, tmp_path):
    _, _, model, path = fitted
    loaded = load_model(path, device="cpu")
    assert loaded.thresholds_ == model.thresholds_
    # a file written before thresholds existed loads with none
    payload = read_model_file(path)
    del payload["thresholds"]
    old = tmp_path / "old.pt"
    write_model_file(old, payload)
    assert load_model(old, device="cpu").thresholds_ is None


def test_crafted_thresholds_in_a_model_file_are_refused(fitted, tmp_path):
    _, _, _, path = fitted
    payload = read_model_file(path)
    payload["thresholds"]["image"] = math.nan
    bad = tmp_path / "bad.pt"
    write_model_file(bad, payload)
    with pytest.raises(ValueError, match="bad.pt.*thresholds"):
        load_model(bad, device="cpu")


def test_threshold_command_re_sets_without_retraining(fitted, tmp_path, capsys):
    _, _, model, path = fitted
    before = path.read_bytes()
    out = tmp_path / "m2.pt"
    assert main(["threshold", "--model", str(path), "--fpr", "0.5", "--out", str(out), "--device", "cpu"]) == 0
    assert path.read_bytes() == before  # the original is untouched
    new = load_model(out, device="cpu")
    assert new.thresholds_.image == pytest.approx(_between_kept_and_flagged(model.thresholds_.normal_scores, 0.5))
    assert new.fpr == 0.5 and new.thresholds_.fpr == 0.5
    assert torch.equal(new.memory_bank_, model.memory_bank_)
    assert "after:" in capsys.readouterr().out
    # never overwrite without --force
    assert main(["threshold", "--model", str(path), "--fpr", "0.1", "--out", str(out)]) == 2
    assert main(["threshold", "--model", str(out), "--fpr", "0.1"]) == 2
    assert "--force" in capsys.readouterr().err
    assert load_model(out, device="cpu").fpr == 0.5
    assert main(["threshold", "--model", str(out), "--fpr", "0.1", "--force", "--device", "cpu"]) == 0
    assert load_model(out, device="cpu").thresholds_.fpr == 0.1


def test_threshold_command_from_normal_images_for_an_old_model(fitted, tmp_path):
    _, data, model, path = fitted
    payload = read_model_file(path)
    del payload["thresholds"]
    old = tmp_path / "old.pt"
    write_model_file(old, payload)
    # re-setting needs stored normal scores, which an old model does not have
    assert main(["threshold", "--model", str(old), "--fpr", "0.1", "--force"]) == 2
    normals = tmp_path / "normals"
    normals.mkdir()
    for p in list_images(data / "test" / "good"):  # normal images the model never trained on
        (normals / p.name).write_bytes(p.read_bytes())
    assert main(["threshold", "--model", str(old), "--normals", str(normals), "--force", "--device", "cpu"]) == 0
    th = load_model(old, device="cpu").thresholds_
    assert th.stats["n_normals"] == 2 and "normals" in th.source


def test_f1_rule_on_annotated_defects(fitted, tmp_path):
    _, data, model, path = fitted
    defects = tmp_path / "defects"
    defects.mkdir()
    for kind in ("hole", "scratch"):
        img = sorted((data / "test" / kind).glob("*.png"))[0]
        (defects / f"{kind}.png").write_bytes(img.read_bytes())
        (defects / f"{kind}_mask.png").write_bytes((data / "ground_truth" / kind / f"{img.stem}_mask.png").read_bytes())
    out = tmp_path / "f1.pt"
    argv = [
        "threshold",
        "--model",
        str(path),
        "--rule",
        "f1",
        "--defects",
        str(defects),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    th = load_model(out, device="cpu").thresholds_
    assert th.rule == "f1" and "2 annotated defects" in th.source and "pixel_f1" in th.stats
    assert main(["threshold", "--model", str(path), "--rule", "f1", "--out", str(tmp_path / "x.pt")]) == 2
