"""Running models the way users and benchmarks do: train, evaluate, test runs, predict, benchmarks.

``evaluate`` scores a fitted model by the protocol; ``test_run`` adds the per-image CSV,
overlays and report; ``predict`` scores unlabelled files; ``train`` reads training input as
users give it; ``benchmark`` runs methods x categories x seeds and ``results`` writes and
summarises their rows; ``environment`` records versions and machine.
"""
