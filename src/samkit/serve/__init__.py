"""`samkit serve`: the interactive annotator (web page) and its HTTP API.

`create_app(folder, model)` builds the FastAPI app; `run(app)` serves it with uvicorn,
`background(app)` serves it from a thread (tests, benchmarks).
FastAPI and uvicorn (the `serve` extra) are imported here, not by `import samkit`.
"""

from .app import create_app
from .server import background, run

__all__ = ["background", "create_app", "run"]
