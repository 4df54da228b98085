"""Two ONNX graphs of one model timed interleaved under ONNX Runtime (batch 8, 256 px, 2 threads).

Usage (from the repository root):

    python benchmarks/onnx_ab.py BEFORE.onnx AFTER.onnx [--images GLOB]

Interleaving puts both graphs under the same machine state in every round; the paired
ratio after/before is the median over rounds. The input is uniform noise (seed 0) unless
``--images`` names image files, of which the first 8 are resized to 256 px (ONNX Runtime
can run a graph at a different speed on real images than on noise).
"""

import argparse
import glob
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

ROUNDS, CALLS, BATCH, SIZE = 12, 3, 8, 256


def batch_of(pattern):
    """BATCH x 3 x SIZE x SIZE float32 in [0, 1]: the first BATCH files of ``pattern``, or noise."""
    if pattern is None:
        return np.random.default_rng(0).random((BATCH, 3, SIZE, SIZE), dtype=np.float32)
    files = sorted(glob.glob(pattern))[:BATCH]
    if len(files) < BATCH:
        raise SystemExit(f"--images {pattern}: {len(files)} files, {BATCH} needed")
    x = np.stack(
        [np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), np.float32) for f in files]
    )
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) / 255)


def main(paths, x):
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--images", help="glob of image files for the input batch (default: uniform noise)")
    args = parser.parse_args()
    main([args.before, args.after], batch_of(args.images))
