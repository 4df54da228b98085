"""Two ONNX graphs of one model timed interleaved under ONNX Runtime (batch 8, 2 threads).

Usage: python ab_ort.py BEFORE.onnx AFTER.onnx. Interleaving puts both graphs under the same
machine state in every round; the paired ratio after/before is the median over rounds.
"""

import sys
import time

import numpy as np
import onnxruntime as ort

ROUNDS, CALLS = 12, 3


def main(paths):
    x = np.random.default_rng(0).random((8, 3, 256, 256), dtype=np.float32)
    sessions = []
    for path in paths:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        for _ in range(3):
            session.run(None, {"image": x})
        sessions.append(session)
    times = {path: [] for path in paths}
    for _ in range(ROUNDS):
        for path, session in zip(paths, sessions):
            t0 = time.perf_counter()
            for _ in range(CALLS):
                session.run(None, {"image": x})
            times[path].append((time.perf_counter() - t0) / CALLS * 1e3)
    for path in paths:
        print(path, f"median {np.median(times[path]):.1f} ms  min {min(times[path]):.1f}")
    ratio = np.array(times[paths[1]]) / np.array(times[paths[0]])
    print(f"paired ratio new/old median {np.median(ratio):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:3])
