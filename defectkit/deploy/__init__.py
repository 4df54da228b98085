"""From a trained model to a decision on the line: scorers, thresholds, export, runtime.

Nothing here imports torch at module level, so the deployment path can run where only
the runtime is installed; the torch-backed pieces import it when they are used.
"""
