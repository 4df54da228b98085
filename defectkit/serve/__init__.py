"""``defectkit serve``: a model behind HTTP, for cameras and line controllers.

FastAPI + uvicorn (the ``serve`` extra). The service talks to the model only through the
:class:`~defectkit.deploy.scorer.Scorer` interface (``load_arrays``, ``score``,
``display_images``), and decides with ``deploy.decisions.decide`` like ``defectkit predict``.

* ``settings.py``  the limits and batching knobs, with their defaults
* ``errors.py``    every refusal as one ``ServeError(status, message)`` -> ``{"error": ...}``
* ``uploads.py``   bytes -> RGB array, refusing non-images, bombs and truncated files first
* ``batcher.py``   dynamic batching: concurrent requests scored together in one worker thread
* ``metrics.py``   Prometheus counters and histograms
* ``middleware.py`` access log (one JSON line per request), API key, request body limit
* ``service.py``   images -> response records (the shared decision code)
* ``v2.py``        the Open Inference Protocol (KServe v2) endpoints
* ``app.py``       the FastAPI application: routes and error handlers
* ``server.py``    loading the model and running uvicorn (graceful shutdown on SIGTERM)

See docs/serving.md.
"""
