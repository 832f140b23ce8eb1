"""The one JSON cleaner (``common.jsonable``) that metrics.json, a model's manifest and the live
journal all go through."""
import datetime as dt
import json

import numpy as np
import pandas as pd

from common.jsonable import to_jsonable


def test_to_jsonable_has_no_nan():
    assert to_jsonable({"a": np.float64("nan"), "b": [np.int64(3), np.bool_(True)], "c": (1.5,)}) == \
        {"a": None, "b": [3, True], "c": [1.5]}


def test_to_jsonable_takes_what_each_writer_met():
    value = {1: float("inf"), "when": pd.Timestamp("2024-01-02 15:30"), "day": dt.date(2024, 1, 2),
             "stamp": dt.datetime(2024, 1, 2, 9, 30), "np_day": np.datetime64("2024-01-02", "D"),
             "array": np.array([1.0, np.nan]), "nested": [{"x": np.float32(0.5)}, (np.int32(-2), None, "s")]}
    clean = to_jsonable(value)
    assert clean == {"1": None, "when": "2024-01-02T15:30:00", "day": "2024-01-02", "stamp": "2024-01-02T09:30:00",
                     "np_day": "2024-01-02", "array": [1.0, None], "nested": [{"x": 0.5}, [-2, None, "s"]]}
    assert type(clean["nested"][0]["x"]) is float and type(clean["nested"][1][0]) is int
    json.dumps(clean, allow_nan=False)
