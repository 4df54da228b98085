"""Running models the way users and benchmarks do: train, evaluate, test runs, predict, benchmarks.

``evaluate`` scores a fitted model by the protocol; ``test_run`` writes a run's folder
(per-image CSV, overlays, ``run.json`` via ``run_record``) and ``report`` its page, with
``breakdown`` (per defect type), ``curves`` and ``worst_cases``; ``predict`` scores
unlabelled files; ``train`` reads training input as users give it; ``benchmark`` runs
methods x categories x seeds, ``results`` writes and summarises their rows and
``benchmark_page`` their page; ``environment`` records versions and machine.
"""
