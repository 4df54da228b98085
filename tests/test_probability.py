"""components.probability: sigmoid with relative precision for tiny probabilities, in torch and
through ONNX Runtime (whose own Sigmoid kernel flattens logits below about -17 to 0)."""

import numpy as np
import onnxruntime as ort
import torch

from defectkit.export.onnx_export import OPSET
from defectkit.models.components.probability import probability

LOGITS = torch.linspace(-80.0, 30.0, 2201)


def test_equals_torch_sigmoid_to_rounding():
    assert torch.allclose(probability(LOGITS), torch.sigmoid(LOGITS), rtol=1e-6, atol=0.0)


class _Probability(torch.nn.Module):
    def forward(self, x):
        return probability(x * 1.0)


def test_exported_graph_keeps_relative_precision_of_tiny_probabilities(tmp_path):
    path = tmp_path / "p.onnx"
    x = LOGITS[None]
    torch.onnx.export(_Probability(), (x,), path, dynamo=True, opset_version=OPSET)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0][0]
    want = torch.sigmoid(LOGITS).double().numpy()
    assert got.min() > 0 and want.min() > 1e-35  # no underflow to 0 in this range
    rel = np.abs(got - want) / want
    assert rel.max() < 1e-5
    # below 1/2 every logit keeps its own probability (no ties), so pixels rank as their logits
    # do; near 1 float32 saturates in any engine
    below = got[LOGITS.numpy() < 0]
    assert np.all(np.diff(below) > 0)
