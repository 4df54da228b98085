import sys, time, numpy as np, onnxruntime as ort
paths = sys.argv[1:]
x = np.random.rand(8, 3, 256, 256).astype(np.float32)
sess = []
for p in paths:
    o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.inter_op_num_threads = 1
    s = ort.InferenceSession(p, o, providers=["CPUExecutionProvider"]); sess.append(s)
    for _ in range(3): s.run(None, {"image": x})
ts = {p: [] for p in paths}
for _ in range(12):
    for p, s in zip(paths, sess):
        t0 = time.perf_counter()
        for _ in range(3): s.run(None, {"image": x})
        ts[p].append((time.perf_counter() - t0) / 3 * 1e3)
for p in paths: print(p, f"median {np.median(ts[p]):.1f} ms  min {min(ts[p]):.1f}")
r = np.array(ts[paths[1]]) / np.array(ts[paths[0]])
print(f"paired ratio new/old median {np.median(r):.3f}")
