"""The bounded PatchCore bank: size cap, near-linear selection, coverage, streaming, search backends."""

import numpy as np
import pytest
import torch
from legacy_files import save_without_params
from PIL import Image

from defectkit.backbones import create_backbone
from defectkit.data import make_demo_dataset
from defectkit.data.mvtec import MVTecCategory
from defectkit.data.preprocess import Preprocess
from defectkit.features.extractor import FeatureExtractor
from defectkit.models import AnomalyModel, PatchCore
from defectkit.models import patchcore as patchcore_module
from defectkit.models.components.bounded_coreset import StreamingCoreset, bank_size
from defectkit.models.components.coreset import greedy_coreset
from defectkit.models.components.nearest_neighbour import HAVE_FAISS, NearestNeighbourIndex
from defectkit.utils.model_file import read_model_file


def stream(x: torch.Tensor, chunk: int, **kwargs) -> StreamingCoreset:
    coreset = StreamingCoreset(len(x), **kwargs)
    for part in x.split(chunk):
        coreset.add(part)
    return coreset


def covering_radius(points: torch.Tensor, centres: torch.Tensor) -> float:
    """The largest distance from a point to its nearest centre (what k-center minimises)."""
    return float(torch.cdist(points, centres).min(dim=1).values.max())


def clusters(n: int, seed: int = 0) -> torch.Tensor:
    """Patch-like data: many tight clusters of uneven sizes, a few far outliers."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(40, 16, generator=g) * 4
    weights = torch.rand(40, generator=g) ** 3 + 1e-3
    which = torch.multinomial(weights, n, replacement=True, generator=g)
    x = centres[which] + torch.randn(n, 16, generator=g) * 0.3
    x[:5] += 25  # rare patterns: one chunk holds them all
    return x


def test_bank_size_is_the_ten_percent_rule_capped():
    assert bank_size(1000, 0.1, 16384) == 100
    assert bank_size(1_000_000, 0.1, 16384) == 16384
    assert bank_size(1_000_000, 0.1, 0) == 100_000


@pytest.mark.parametrize("n,cap", [(3000, 100), (3000, 1000), (800, 1000)])
def test_the_bank_never_exceeds_the_cap(n, cap):
    x = torch.randn(n, 24)
    bank = stream(x, 500, ratio=0.1, max_size=cap, projection_dim=8, seed=0).finish()
    assert bank.shape == (min(cap, round(0.1 * n)), 24)
    # every bank row is a training row
    assert (bank[:, None] == x[None]).all(-1).any(1).all()


def test_without_a_cap_it_is_the_exact_greedy_coreset():
    x = torch.randn(4000, 48)
    exact = x[greedy_coreset(x, ratio=0.1, projection_dim=16, seed=5, progress=False)]
    bank = stream(x, 700, ratio=0.1, max_size=0, projection_dim=16, seed=5).finish()
    assert torch.equal(bank, exact)


def test_selection_cost_stays_bounded_as_the_data_grows():
    # exact greedy costs N x 0.1 N evaluations (x16 for 4x the data); the bounded one must not grow
    counts = {}
    for n in (8_000, 32_000):
        coreset = stream(torch.randn(n, 8), 2_000, ratio=0.1, max_size=400, projection_dim=0, seed=0)
        coreset.finish()
        counts[n] = coreset.distance_evaluations
    assert counts[32_000] <= 1.2 * counts[8_000]
    assert counts[32_000] < 32_000 * 3_200 / 10  # and is far below exact greedy at that size


def test_coverage_is_close_to_exact_greedy():
    x = clusters(6000)
    k = 150
    exact = x[greedy_coreset(x, ratio=k / len(x), projection_dim=0, seed=0, progress=False)]
    bounded = stream(x, 1000, ratio=0.1, max_size=k, projection_dim=0, seed=0, pool_factor=2.0).finish()
    random = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:k]]
    r_exact, r_bounded, r_random = (covering_radius(x, c) for c in (exact, bounded, random))
    assert r_bounded <= 1.5 * r_exact  # k-center greedy is a 2-approximation; the two-level one stays close
    assert r_bounded < r_random
    assert (torch.cdist(x[:5], bounded).min(dim=1).values < 1.0).all()  # the rare patterns are kept


def test_candidates_held_never_exceed_the_pool():
    x = torch.randn(20_000, 8)
    coreset = StreamingCoreset(len(x), ratio=0.1, max_size=300, projection_dim=0, seed=0, pool_factor=2.0)
    for part in x.split(1_000):
        coreset.add(part)
        assert coreset.candidates <= coreset.pool_size == 600
    assert coreset.candidates == 600


def test_adding_more_rows_than_announced_fails_clearly():
    coreset = StreamingCoreset(100, max_size=10)
    coreset.add(torch.randn(80, 4))
    with pytest.raises(ValueError, match="more rows added"):
        coreset.add(torch.randn(40, 4))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = make_demo_dataset(
        tmp_path_factory.mktemp("demo"), seed=0, n_train=14, n_test_good=2, n_test_defect=3, size=64
    )
    return MVTecCategory(root)


def test_patchcore_fit_streams_chunks_and_caps_its_bank(demo, monkeypatch):
    seen = []
    add = StreamingCoreset.add

    def spy(self, features):
        seen.append((len(features), self.candidates))
        add(self, features)

    monkeypatch.setattr(StreamingCoreset, "add", spy)
    monkeypatch.setattr(patchcore_module, "STREAM_IMAGES", 3)
    monkeypatch.setattr(FeatureExtractor, "__call__", lambda *a, **k: pytest.fail("fit stacked every image"))
    model = PatchCore(image_size=64, device="cpu", use_cache=False, max_bank_size=20, calibration_fraction=0.0)
    model.fit(demo, progress=False)
    per_image = 8 * 8  # 64 px at stride 8
    assert len(seen) == 5 and max(rows for rows, _ in seen) == 3 * per_image  # 14 images in chunks of 3
    assert max(held for _, held in seen) <= model.fit_info_["coreset_candidates"] == 40
    assert model.memory_bank_.shape[0] == model.fit_info_["bank_size"] == 20
    assert model.fit_info_["patches"] == 14 * per_image


def test_stream_yields_the_same_features_as_one_call_and_fills_the_cache(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(paths[-1])
    fx = FeatureExtractor(
        create_backbone("efficientnet_lite0"),
        Preprocess(64),
        (8, 16),
        torch.device("cpu"),
        batch_size=2,
        cache_dir=tmp_path / "cache",
    )
    chunks = list(fx.stream(paths, chunk_images=2))
    assert [idx for idx, _ in chunks] == [[0, 1], [2, 3], [4]]
    assert len(list(fx.cache_dir.glob("*.pt"))) == 5
    whole = fx(paths)  # read back from the cache
    for s in (8, 16):
        assert torch.equal(torch.cat([c[s] for _, c in chunks]), whole[s])


def test_models_saved_before_the_cap_load_with_their_exact_bank(demo, tmp_path):
    model = PatchCore(image_size=64, device="cpu", use_cache=False).fit(demo, progress=False)
    old = AnomalyModel.load(
        save_without_params(model, tmp_path / "m.pt", "max_bank_size", "candidate_factor"), device="cpu"
    )
    assert old.max_bank_size == 0  # refitting it reproduces the uncapped bank it was trained with
    assert torch.equal(old.memory_bank_, model.memory_bank_)


def test_the_cap_travels_in_the_file_so_a_changed_default_leaves_saved_models_alone(demo, tmp_path):
    assert PatchCore().max_bank_size == 4096  # chosen on validation (docs/methods/patchcore.md)
    model = PatchCore(image_size=64, device="cpu", use_cache=False, max_bank_size=16384, calibration_fraction=0.0)
    path = model.fit(demo, progress=False).save(tmp_path / "m.pt")
    assert read_model_file(path)["params"]["max_bank_size"] == 16384
    assert AnomalyModel.load(path, device="cpu").max_bank_size == 16384


@pytest.mark.parametrize("backend", ["torch"] + (["faiss"] if HAVE_FAISS else []))
def test_faiss_and_torch_agree_with_brute_force_on_a_bank_of_patch_size(backend):
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(3000, 64, generator=g), torch.randn(500, 64, generator=g)
    index = NearestNeighbourIndex(bank, backend)
    d, i = index.search(queries, k=5)
    ref_d, ref_i = torch.cdist(queries, bank).topk(5, largest=False)
    assert index.exact
    torch.testing.assert_close(d, ref_d, atol=1e-3, rtol=1e-4)
    assert (i == ref_i).float().mean() > 0.999


@pytest.mark.skipif(not HAVE_FAISS, reason="faiss is not installed")
def test_banks_above_the_exact_limit_use_hnsw_with_high_recall():
    x = clusters(6000, seed=1)
    bank, queries = x[:5000], x[5000:] + 0.05 * torch.randn(1000, 16)
    index = NearestNeighbourIndex(bank, "auto", exact_max_rows=1000)
    assert not index.exact
    d, i = index.search(queries, k=1)
    ref_d, ref_i = torch.cdist(queries, bank).min(dim=1)
    assert (i[:, 0] == ref_i).float().mean() > 0.95
    assert ((d[:, 0] - ref_d) / ref_d).mean() < 0.02  # on average a distance barely above the exact one
    assert NearestNeighbourIndex(bank, "faiss", exact_max_rows=1000).exact  # asked for by name: exact
