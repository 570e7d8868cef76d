"""Feature flags: one documented list; every flag has a test toggling it; unknown flags fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.gateway import Gateway
from plugins.flags import FLAGS
from tests.support.inprocess import ECHO_ROUTING, echo_plugin_manager, write_configs


def test_every_flag_is_documented_and_has_a_test_toggling_it():
    tests_text = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    for name, description in FLAGS.items():
        assert len(description) > 40, f"flag {name} needs a description"
        assert f"def test_flag_{name}_" in tests_text, f"flag {name} has no test_flag_{name}_* test"


def test_an_unknown_flag_is_reported_at_startup(tmp_path):
    settings = write_configs(tmp_path, feature_flags=("truncate_inputs", "no_such_flag"))
    with pytest.raises(ConfigError, match="unknown feature flag.*no_such_flag"):
        Gateway(settings, echo_plugin_manager())
    settings = write_configs(tmp_path, routing=dict(ECHO_ROUTING, feature_flags=["no_such_flag"]))
    with pytest.raises(ConfigError, match="routing.yaml feature_flags: no_such_flag"):
        Gateway(settings, echo_plugin_manager()).validate()
