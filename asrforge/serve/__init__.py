"""``asrforge serve``: an OpenAI-compatible speech API (FastAPI + uvicorn, the extra ``serve``).

:mod:`app` holds the routes, :mod:`fields` the form, :mod:`formats` the response shapes, :mod:`scheduler` the
shared inference thread, :mod:`models` the served models, :mod:`uploads` the upload cap and temporary files,
:mod:`metrics` Prometheus, :mod:`errors` OpenAI's error body. See docs/serving.md.
"""
