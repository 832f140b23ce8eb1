"""``benchmarks/live_latency.py --set``: extra config lines for the live process it measures."""
import tomllib

import pytest

from benchmarks.live_latency import with_settings

BASE = "[ml]\nmin_confidence = 0.5\n[models.search]\nschedule = \"off\"\n"


def test_a_setting_joins_its_table_or_opens_one():
    text = with_settings(BASE, ['models.base_models=["xgboost", "lightgbm"]', "ml.min_expected_return = 0.02"])
    config = tomllib.loads(text)
    assert config["models"] == {"base_models": ["xgboost", "lightgbm"], "search": {"schedule": "off"}}
    assert config["ml"] == {"min_confidence": 0.5, "min_expected_return": 0.02}


def test_no_settings_leave_the_text_alone():
    assert with_settings(BASE, []) == BASE


@pytest.mark.parametrize("setting, error", [("ml.min_confidence=0.7", "not valid TOML"),   # set already
                                            ("min_confidence=0.7", "expected SECTION.KEY=VALUE"),
                                            ("ml.min_confidence", "expected SECTION.KEY=VALUE"),
                                            ("ml.note=plain words", "not valid TOML")])
def test_a_setting_that_cannot_be_applied_is_refused(setting, error):
    with pytest.raises(SystemExit, match=error):
        with_settings(BASE, [setting])
