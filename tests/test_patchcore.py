"""PatchCore: coreset, exact search, reweighting, estimator protocol."""

import numpy as np
import pytest
import torch
from conftest import MVTEC_BOTTLE, requires_shared_data

from defectkit.data import make_demo_dataset
from defectkit.data.mvtec import MVTecCategory
from defectkit.metrics import image_auroc
from defectkit.models import AnomalyModel, PatchCore
from defectkit.models.components.coreset import greedy_coreset
from defectkit.models.components.nearest_neighbour import HAVE_FAISS, NearestNeighbourIndex
from defectkit.utils.model_file import read_model_file, write_model_file


def brute_force_greedy(x: torch.Tensor, k: int, start: int) -> list:
    chosen = [start]
    for _ in range(k - 1):
        d = torch.cdist(x, x[chosen]).min(dim=1).values
        chosen.append(int(d.argmax()))
    return chosen


def test_greedy_coreset_matches_brute_force_k_center():
    x = torch.randn(300, 8)
    got = greedy_coreset(x, ratio=0.1, projection_dim=0, seed=3, progress=False)
    expected = brute_force_greedy(x, len(got), int(got[0]))
    assert got.tolist() == expected


def test_coreset_covers_outliers_better_than_random():
    x = torch.cat([torch.randn(990, 4) * 0.1, torch.randn(10, 4) + 10])
    idx = greedy_coreset(x, ratio=0.02, projection_dim=0, seed=0, progress=False)
    assert (idx >= 990).sum() >= 5  # the far cluster is represented


@pytest.mark.parametrize("backend", ["torch"] + (["faiss"] if HAVE_FAISS else []))
def test_nearest_neighbour_is_exact(backend):
    bank, queries = torch.randn(500, 16), torch.randn(200, 16)
    d, i = NearestNeighbourIndex(bank, backend).search(queries, k=3)
    ref = torch.cdist(queries, bank)
    ref_d, ref_i = ref.topk(3, largest=False)
    assert torch.allclose(d, ref_d, atol=1e-4)
    assert torch.equal(i[:, 0], ref_i[:, 0])


def test_reweighting_formula_by_hand():
    model = PatchCore(num_neighbours=3, device="cpu")
    model.memory_bank_ = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
    feats = torch.tensor([[[0.5, 0.0], [0.0, 2.0]]])  # one image, two patches
    d, idx = model.index_.search(feats[0], k=1)
    scores = model.reweighted_max(feats, d[:, 0][None], idx[:, 0][None])
    # worst patch (0, 2): distance 2 to m* = (0, 0); support of m*: (0,0), (1,0), (3,0)
    dists = torch.tensor([2.0, 5**0.5, 13**0.5])
    expected = (1 - torch.exp(dists[0]) / torch.exp(dists).sum()) * 2.0
    assert torch.allclose(scores, expected.reshape(1))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = make_demo_dataset(
        tmp_path_factory.mktemp("demo"), seed=0, n_train=16, n_test_good=4, n_test_defect=6, size=128
    )
    return MVTecCategory(root)


def test_fit_predict_save_load_round_trip(demo, tmp_path):
    model = PatchCore(image_size=128, device="cpu", use_cache=False).fit(demo, progress=False)
    scores, maps = model.predict(demo.test)
    assert maps.shape == (len(demo.test), 128, 128)
    labels = np.array([s.label for s in demo.test])
    assert image_auroc(labels, scores) > 0.8
    path = model.save(tmp_path / "m.pt")
    with pytest.raises(FileExistsError):
        model.save(path)
    loaded = AnomalyModel.load(path, device="cpu")
    assert isinstance(loaded, PatchCore) and loaded.image_size == 128
    s2, m2 = loaded.predict(demo.test)
    np.testing.assert_array_equal(scores, s2)
    np.testing.assert_array_equal(maps, m2)


def test_load_refuses_a_model_trained_on_another_backbone_revision(demo, tmp_path):
    model = PatchCore(image_size=64, device="cpu", use_cache=False).fit(demo, progress=False)
    path = model.save(tmp_path / "m.pt")
    payload = read_model_file(path)
    payload["backbone"]["revision"] = 1
    write_model_file(path, payload)
    with pytest.raises(ValueError, match="revision 1.*Retrain"):
        AnomalyModel.load(path, device="cpu")


def test_same_seed_same_scores(demo):
    a = PatchCore(image_size=64, device="cpu", use_cache=False, seed=1).fit(demo, progress=False).predict(demo.test)[0]
    b = PatchCore(image_size=64, device="cpu", use_cache=False, seed=1).fit(demo, progress=False).predict(demo.test)[0]
    np.testing.assert_array_equal(a, b)


def test_load_rejects_foreign_and_future_files(tmp_path):
    torch.save({"hello": 1}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a defectkit model"):
        AnomalyModel.load(tmp_path / "x.pt")
    torch.save({"format": "defectkit-model", "format_version": 999}, tmp_path / "y.pt")
    with pytest.raises(ValueError, match="newer"):
        AnomalyModel.load(tmp_path / "y.pt")
    (tmp_path / "z.pt").write_text("not a model")
    with pytest.raises(ValueError, match="z.pt"):
        AnomalyModel.load(tmp_path / "z.pt")


@pytest.mark.realdata
@requires_shared_data
def test_real_bottle_subset_end_to_end(tmp_path):
    """Real MVTec bottle images: a small PatchCore separates good from broken bottles."""
    data = MVTecCategory(MVTEC_BOTTLE)
    good = [s for s in data.test if s.label == 0][:6]
    bad = [s for s in data.test if s.defect_type == "broken_large"][:6]
    model = PatchCore(image_size=128, device="cpu", cache_dir=str(tmp_path / "cache")).fit(
        data.train[:40], progress=False
    )
    scores, maps = model.predict(good + bad)
    assert image_auroc(np.array([0] * len(good) + [1] * len(bad)), scores) >= 0.9
    assert maps.shape == (12, 128, 128)
