"""The estimator protocol, the same for every method: plain constructors, params, factory checks."""

import pytest

from defectkit.models import available_methods, method_class
from defectkit.models.base import BASE_PARAMS
from defectkit.models.factory import accepted_params, build_model

METHODS = ["patchcore", "simplenet", "realnet", "prn", "mlff"]


def test_every_builtin_method_is_registered():
    assert set(METHODS) <= set(available_methods())


@pytest.mark.parametrize("name", METHODS)
def test_constructor_only_stores_its_parameters(name):
    cls = method_class(name)
    model = cls()
    assert set(vars(model)) == set(cls.param_names())  # nothing built, resolved or checked
    assert set(BASE_PARAMS) <= set(cls.param_names())
    assert model.get_params() == {k: getattr(model, k) for k in cls.param_names()}
    assert not model.fitted_


@pytest.mark.parametrize("name", METHODS)
def test_get_params_round_trips_through_the_constructor(name):
    cls = method_class(name)
    model = cls(seed=3, image_size=64, device="cpu")
    clone = cls(**model.get_params())
    assert clone.get_params() == model.get_params()


def test_set_params_changes_parameters_and_refuses_unknown_names():
    model = method_class("patchcore")(device="cpu")
    assert model.set_params(batch_size=2, coreset_ratio=0.2) is model
    assert model.batch_size == 2 and model.coreset_ratio == 0.2
    with pytest.raises(ValueError, match="unknown parameter.*coreset"):
        model.set_params(coreset=0.2)


def test_base_parameters_are_declared_once():
    """Methods pass the base parameters on (``**base``) instead of restating them."""
    import inspect

    for name in METHODS:
        own = inspect.signature(method_class(name).__init__).parameters
        assert not set(own) & set(BASE_PARAMS), name
        assert set(accepted_params(name)).isdisjoint(BASE_PARAMS)


@pytest.mark.parametrize(
    "name, params, needle",
    [
        ("patchcore", {"coreset_ratio": 0.0}, "coreset_ratio"),
        ("simplenet", {"image_score": "mean"}, "image_score"),
        ("realnet", {"afs": "best"}, "afs"),
        ("prn", {"batch_mix": (0, 1, 1)}, "batch_mix"),
        ("mlff", {"output_stride": 16}, "output_stride"),
    ],
)
def test_factory_checks_values_before_anything_runs(name, params, needle):
    with pytest.raises(ValueError, match=needle):
        build_model(name, params, device="cpu")
    with pytest.raises(ValueError, match="unknown parameter"):
        build_model(name, {"no_such_option": 1}, device="cpu")


def test_factory_checks_base_values():
    with pytest.raises(ValueError, match="crop_size"):
        build_model("patchcore", None, image_size=64, crop_size=128, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        build_model("patchcore", None, batch_size=0, device="cpu")
