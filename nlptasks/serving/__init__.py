"""``nlptasks serve``: a trained model behind an ASGI app (FastAPI on uvicorn).

``nlptasks.serve(model_dir, ...)`` builds the app, for tests and for users who mount it in
their own ASGI server."""

from __future__ import annotations
