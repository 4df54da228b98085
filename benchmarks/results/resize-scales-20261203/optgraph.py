"""Op types (with their domain) of ONNX Runtime's optimised graph of a model.

Usage: python optgraph.py M.onnx. Shows which resizes became the blocked (NCHWc) Upsample and
how many layout reorders the graph keeps; the optimised graph is specific to this CPU.
"""

import collections
import sys
import tempfile

import onnx
import onnxruntime as ort


def main(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.optimized_model_filepath = tempfile.mkdtemp() + "/optimised.onnx"
    ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    graph = onnx.load(opts.optimized_model_filepath).graph
    counts = collections.Counter((n.domain or "ai.onnx") + ":" + n.op_type for n in graph.node)
    for op, count in sorted(counts.items()):
        print(f"{count:4d} {op}")


if __name__ == "__main__":
    main(sys.argv[1])
