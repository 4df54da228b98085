"""From a trained model to one ONNX file the torch-free runtime can run (needs the training install).

``graph.py`` is each model's scoring as one torch module (preprocessed image in, score and
map out); ``onnx_export.py`` exports it, writes the model's metadata into the file and
checks parity with the torch model on real images (``parity.py``).
"""
