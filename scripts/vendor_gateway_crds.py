"""Vendor the CRD schemas the Envoy Gateway resources are validated against (tests/fixtures/gateway-crds/).

    python scripts/vendor_gateway_crds.py GATEWAY_API_CHECKOUT ENVOY_GATEWAY_CHECKOUT

Each CRD's openAPIV3Schema per served version becomes one JSON file, ``<group>_<version>_<Kind>.json``.
Descriptions are dropped (they are most of the size and no part of validation); nothing else changes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "gateway-crds"
SOURCES = {
    "gateway-api v1.6.1": ("config/crd/standard", ["gateway.networking.k8s.io_gateways.yaml",
                                                   "gateway.networking.k8s.io_httproutes.yaml",
                                                   "gateway.networking.k8s.io_gatewayclasses.yaml"]),
    "envoy-gateway v1.9.0": ("charts/gateway-helm/charts/crds/crds/generated",
                             ["gateway.envoyproxy.io_backendtrafficpolicies.yaml",
                              "gateway.envoyproxy.io_clienttrafficpolicies.yaml",
                              "gateway.envoyproxy.io_envoyproxies.yaml",
                              "gateway.envoyproxy.io_httproutefilters.yaml"]),
}


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        # A "description" keyword (a string), not a property of that name (a schema).
        return {k: _strip(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def main(gateway_api: str, envoy_gateway: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for (source, (folder, names)), checkout in zip(SOURCES.items(), (gateway_api, envoy_gateway), strict=True):
        for name in names:
            crd = yaml.safe_load((Path(checkout) / folder / name).read_text())
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = _strip(version["schema"]["openAPIV3Schema"])
                schema["$comment"] = f"{source}: {folder}/{name}, openAPIV3Schema of {version['name']}"
                out = OUT / f"{spec['group']}_{version['name']}_{spec['names']['kind']}.json"
                out.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
