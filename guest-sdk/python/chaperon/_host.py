"""The bindings componentize-py generates from wit/ (module ``wit_world``), in one place.

componentize-py generates them when it builds the component; ``componentize-py -d wit -w scenario
bindings DIR`` writes the same modules for editors and for the SDK's unit tests.
"""

from componentize_py_types import Err, Ok  # noqa: F401
from wit_world.imports import http, session, types, websocket  # noqa: F401


def timeout_ms(ms):
    """A timeout for the host: ``None`` stays none (the load test's default), else whole ms."""
    return None if ms is None else int(ms)
