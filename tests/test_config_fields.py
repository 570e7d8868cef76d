"""One table of config fields, owned by the schemas: docs/config-fields.md is what
``maas check-config --fields`` prints, and the parser accepts exactly the declared keys."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.config import Settings
from core.config.routing import ROUTE_FIELDS, UPSTREAM_FIELDS
from core.errors import ConfigError
from core.fields import field_table
from core.gateway import Gateway
from tests.support.inprocess import write_configs
from tests.support.processes import ROOT, base_env

DOC = ROOT / "docs" / "config-fields.md"


def test_the_committed_table_is_what_the_schemas_print():
    printed = subprocess.run([sys.executable, "-m", "core.cli", "check-config", "--fields"], cwd=ROOT,
                             env=base_env(), capture_output=True, text=True, timeout=120, check=True).stdout
    assert printed == field_table(Gateway(Settings()))
    assert DOC.read_text() == printed, "regenerate: maas check-config --fields > docs/config-fields.md"


def test_every_declared_field_is_in_the_table():
    table = DOC.read_text()
    gateway = Gateway(Settings())
    declared = [*ROUTE_FIELDS, *UPSTREAM_FIELDS, *gateway.route_options]
    for cls in gateway.registry.factories.values():
        declared += [*cls.upstream_options, *cls.route_options]
    assert len(declared) > 25
    missing = [o.name for o in declared if f"| `{o.name}` |" not in table]
    assert not missing


@pytest.mark.parametrize("where, entry", [
    ("route", {"model": "e", "upstream": {"type": "local"}, "servd_name": "x"}),
    ("upstream", {"model": "e", "upstream": {"type": "local", "max_batch_sise": 4}}),
    ("options", {"model": "e", "upstream": {"type": "local"}, "options": {"coalesce_wait": 1}}),
])
def test_a_misspelt_field_is_refused_at_every_level(tmp_path, where, entry):
    settings = write_configs(tmp_path, routing={"embeddings": [entry]})
    with pytest.raises(ConfigError, match="unknown (field|option)") as err:
        Gateway(settings).validate()
    assert err.value.file == settings.routing_path and err.value.line is not None
