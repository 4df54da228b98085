"""PaDiM: the streaming Gaussian and Mahalanobis distance against numpy, the estimator protocol."""

import numpy as np
import pytest
import torch

from defectkit.data import make_demo_dataset
from defectkit.data.mvtec import MVTecCategory
from defectkit.models import load_model, method_class
from defectkit.models.factory import build_model
from defectkit.models.padim.gaussian import GaussianAccumulator, mahalanobis, precision_matrices

SMALL = {"image_size": 64, "device": "cpu", "use_cache": False, "n_features": 32}


@pytest.fixture(scope="module")
def category(tmp_path_factory):
    root = make_demo_dataset(tmp_path_factory.mktemp("padim"), n_train=16, n_test_good=4, n_test_defect=4, size=96)
    return MVTecCategory(root)


@pytest.fixture(scope="module")
def fitted(category):
    return method_class("padim")(**SMALL).fit(category, progress=False)


def test_streaming_gaussian_and_mahalanobis_match_numpy():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(23, 3, 4)) @ rng.normal(size=(4, 4))  # correlated channels, 3 positions
    acc = GaussianAccumulator(positions=3, dim=4)
    for start in range(0, 23, 7):  # uneven chunks: the sums must not depend on them
        acc.update(torch.from_numpy(feats[start : start + 7]))
    mean, cov = acc.mean_and_covariance(eps=0.01)
    queries = rng.normal(size=(5, 3, 4))
    got = mahalanobis(torch.from_numpy(queries), mean, precision_matrices(cov)).numpy()
    for p in range(3):
        ref_mean = feats[:, p].mean(axis=0)
        ref_cov = np.cov(feats[:, p], rowvar=False) + 0.01 * np.eye(4)
        np.testing.assert_allclose(mean[p].numpy(), ref_mean, rtol=1e-10)
        np.testing.assert_allclose(cov[p].numpy(), ref_cov, rtol=1e-8, atol=1e-10)
        inv = np.linalg.inv(ref_cov)
        ref = [np.sqrt((q - ref_mean) @ inv @ (q - ref_mean)) for q in queries[:, p]]
        np.testing.assert_allclose(got[:, p], ref, rtol=1e-8)


def test_covariance_needs_two_images_and_matching_shapes():
    acc = GaussianAccumulator(positions=2, dim=3)
    with pytest.raises(ValueError, match="N x 2 x 3"):
        acc.update(torch.zeros(4, 3, 3))
    acc.update(torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="at least 2 training images"):
        acc.mean_and_covariance(0.01)


def test_fit_predict_save_load_round_trip(category, fitted, tmp_path):
    paths = [s.path for s in category.test]
    scores, maps = fitted.predict(paths)
    assert scores.shape == (len(paths),) and maps.shape == (len(paths), 64, 64)
    np.testing.assert_allclose(scores, maps.reshape(len(paths), -1).max(axis=1), rtol=1e-6)  # score = map max
    h, w = fitted.grid_
    assert fitted.mean_.shape == (h * w, 32) and fitted.precision_.shape == (h * w, 32, 32)
    assert fitted.fit_info_["train_images"] + fitted.fit_info_["val_images"] == len(category.train)
    assert fitted.thresholds_ is not None  # set on the held-out normals
    loaded = load_model(fitted.save(tmp_path / "padim.pt"), device="cpu")
    assert loaded.method == "padim" and loaded.get_params() == {**fitted.get_params(), "device": "cpu"}
    assert torch.equal(loaded.channels_, fitted.channels_)
    again, again_maps = loaded.predict(paths)
    np.testing.assert_allclose(again, scores, rtol=1e-6)
    np.testing.assert_allclose(again_maps, maps, rtol=1e-5, atol=1e-5)


def test_channel_subset_is_seeded():
    first = method_class("padim")(n_features=40, seed=0).choose_channels(176)
    assert torch.equal(first, method_class("padim")(n_features=40, seed=0).choose_channels(176))
    assert not torch.equal(first, method_class("padim")(n_features=40, seed=1).choose_channels(176))
    assert len(first) == 40 and len(set(first.tolist())) == 40 and torch.equal(first, first.sort().values)
    assert torch.equal(method_class("padim")(n_features=None).choose_channels(176), torch.arange(176))
    with pytest.raises(ValueError, match="stack only 176 channels"):
        method_class("padim")(n_features=200).choose_channels(176)


def test_map_is_higher_on_a_synthetic_defect(category, fitted):
    normal = fitted.as_tensor([s.path for s in category.test if s.label == 0][:1])
    defect = normal.clone()
    defect[:, :, 24:40, 24:40] = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)  # a magenta square
    (normal_score, defect_score), maps = fitted.predict(torch.cat([normal, defect]))
    inside = np.zeros((64, 64), bool)
    inside[24:40, 24:40] = True
    assert defect_score > normal_score
    assert maps[1][inside].mean() > 2 * maps[1][~inside].mean()
    assert maps[1][inside].mean() > 2 * maps[0][inside].mean()


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"grid_stride": 32}, "grid_stride must be one of strides"),
        ({"covariance_eps": 0.0}, "covariance_eps"),
        ({"n_features": 0}, "n_features"),
        ({"calibration_fraction": 1.0}, "calibration_fraction"),
    ],
)
def test_bad_parameters_fail_before_anything_runs(params, needle):
    with pytest.raises(ValueError, match=needle):
        build_model("padim", params, device="cpu")


def test_constructor_only_stores_its_parameters():
    model = method_class("padim")(n_features=10)
    assert set(vars(model)) == set(model.param_names()) and not model.fitted_
    assert method_class("padim")(**model.get_params()).get_params() == model.get_params()
