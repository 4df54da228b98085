"""engine.speed: engines are timed in interleaved rounds and compared by paired ratios."""

import pytest

from defectkit.engine.speed import EngineSpeed, SpeedResult, interleaved_rates


def test_rounds_interleave_the_engines_and_alternate_their_order():
    calls = []

    def run(name):
        def one() -> int:
            calls.append(name)
            return 8

        return one

    rates = interleaved_rates([run("a"), run("b")], rounds=4)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert [len(r) for r in rates] == [4, 4] and all(v > 0 for r in rates for v in r)


def _result(onnx_passes, torch_passes):
    result = SpeedResult("m.onnx", "padim", 256, 8, 2, 2, len(onnx_passes), 0, None)
    for name, passes in (("onnxruntime", onnx_passes), ("torch", torch_passes)):
        result.engines.append(EngineSpeed(name, sorted(passes)[len(passes) // 2], graph_passes=list(passes)))
    return result


def test_ratio_is_the_median_of_per_round_ratios():
    # per round 2.0, 4.0, 1.5: the paired median is 2.0; medians alone would give 20 / 5 = 4.0
    result = _result([10.0, 20.0, 30.0], [5.0, 5.0, 20.0])
    assert result.ratio("graph_images_per_s") == pytest.approx(2.0)
    assert result.ratio("end_to_end_images_per_s") is None  # no end-to-end passes
    assert "2.00x" in "\n".join(result.lines()) and "2.00x" in result.markdown()


def test_no_ratio_without_both_engines():
    result = _result([10.0], [5.0])
    result.engines.pop()
    assert result.ratio("graph_images_per_s") is None
