"""The one JSON cleaner: what the run's files (``metrics.json``, a model's manifest) and the live
journal store must survive ``json.dumps(..., allow_nan=False)``."""
from __future__ import annotations

import datetime as dt
import math

import numpy as np


def to_jsonable(value):
    """A copy of ``value`` that JSON can hold, recursively: NaN and infinities -> None, numpy
    scalars and arrays -> Python numbers and lists, datetimes and dates (``pd.Timestamp`` too) ->
    ISO text, tuples -> lists, dict keys -> text."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, (dt.datetime, dt.date)):
            return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
