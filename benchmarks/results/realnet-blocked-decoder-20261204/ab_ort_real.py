"""Two ONNX graphs of one model timed interleaved under ONNX Runtime (batch 8 of bottle train images, 256 px, 2 threads).

Usage (from the repository root): python ab_ort_real.py BEFORE.onnx AFTER.onnx. Interleaving puts both graphs under the same
machine state in every round; the paired ratio after/before is the median over rounds.
"""

import glob
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

ROUNDS, CALLS = 12, 3
IMAGES = "../shared/data/mvtec_ad/bottle/train/good/*.png"


def main(paths):
    files = sorted(glob.glob(IMAGES))[:8]
    x = np.stack(
        [np.asarray(Image.open(f).convert("RGB").resize((256, 256), Image.BILINEAR), np.float32) for f in files]
    )
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2) / 255)
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
