"""The Envoy Gateway resources (deploy/k8s/envoy-gateway/) against the CRD schemas of the releases
they are written for (tests/fixtures/gateway-crds/, vendored by scripts/vendor_gateway_crds.py),
strictly (an unknown field fails, as ``kubectl apply --validate=strict`` would), and against the
single-host Envoy bootstrap they mirror."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from core.config import Settings
from tests.support.deploy import DEPLOY
from tests.support.envoy import clusters, load_bootstrap
from tests.support.processes import ROOT

RESOURCES = DEPLOY / "k8s" / "envoy-gateway" / "envoy-gateway.yaml"
CRDS = ROOT / "tests" / "fixtures" / "gateway-crds"


def _docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(RESOURCES.read_text()) if d]


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever Kubernetes would prune them."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _errors(doc: dict[str, Any]) -> list[str]:
    group, version = doc["apiVersion"].split("/")
    path = CRDS / f"{group}_{version}_{doc['kind']}.json"
    assert path.is_file(), f"no vendored schema for {doc['apiVersion']} {doc['kind']}"
    schema = _strict(json.loads(path.read_text()))
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta is not part of a CRD's schema
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]


def _kind(kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [d for d in _docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return doc


@pytest.mark.parametrize("doc", _docs(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_every_resource_validates_against_its_crd_schema(doc):
    assert not _errors(doc)


def test_the_strict_check_catches_a_misspelt_field_and_a_bad_value():
    policy = copy.deepcopy(_kind("BackendTrafficPolicy", "maas-router"))
    policy["spec"]["retry"]["retryOnn"] = policy["spec"]["retry"].pop("retryOn")
    assert any("retryOnn" in e for e in _errors(policy))
    policy = copy.deepcopy(_kind("ClientTrafficPolicy"))
    policy["spec"]["tls"]["minVersion"] = "1.4"
    assert _errors(policy)


def test_the_gateway_resources_agree_with_envoy_yaml_and_the_router():
    boot = load_bootstrap()
    cluster = clusters(boot)["maas_router"]
    policy = _kind("BackendTrafficPolicy", "maas-router")["spec"]
    assert policy["loadBalancer"]["type"] == "LeastRequest" and cluster["lb_policy"] == "LEAST_REQUEST"
    assert policy["healthCheck"]["panicThreshold"] == cluster["common_lb_config"]["healthy_panic_threshold"]["value"]
    (check,) = cluster["health_checks"]
    assert policy["healthCheck"]["active"]["http"]["path"] == check["http_health_check"]["path"]
    assert policy["healthCheck"]["active"]["interval"] == check["interval"]
    routes = boot["static_resources"]["listeners"][1]["filter_chains"][0]["filters"][0]["typed_config"]
    # the catch-all route (the bulk-job uploads' own route is Envoy-only: not retried, not buffered)
    (route,) = [r["route"] for r in routes["route_config"]["virtual_hosts"][0]["routes"]
                if "route" in r and r["match"] == {"prefix": "/"}]
    assert set(policy["retry"]["retryOn"]["triggers"]) == set(route["retry_policy"]["retry_on"].split(","))
    assert "httpStatusCodes" not in policy["retry"]["retryOn"]  # never a 503
    assert policy["timeout"]["http"]["requestTimeout"] == route["timeout"]
    limit = re.fullmatch(r"(\d+)Mi", policy["requestBuffer"]["limit"])
    assert limit and int(limit.group(1)) * 2**20 == Settings().max_body_bytes
    codes = {o["match"]["statusCodes"][0]["value"]: json.loads(o["response"]["body"]["inline"])["error"]["code"]
             for o in policy["responseOverride"]}
    assert codes == {413: "request_too_large", 503: "upstream_unavailable", 504: "upstream_timeout"}
    assert all(o["source"] == "Local" for o in policy["responseOverride"])  # the routers' answers untouched
    own_answers = [o["response"] for o in policy["responseOverride"]]
    own_answers.append(_kind("HTTPRouteFilter")["spec"]["directResponse"])
    for answer in own_answers:  # Envoy's own answers carry the request id, as the router's do
        assert {"name": "X-Request-ID", "value": "%REQ(X-REQUEST-ID)%"} in answer["header"]["set"]
    router = _kind("HTTPRoute", "maas-router")["spec"]["rules"][-1]
    assert router["backendRefs"] == [{"name": "router", "port": 8000}]  # the router chart's Service
    assert router["timeouts"]["request"] == route["timeout"]
    redirect = _kind("HTTPRoute", "maas-redirect")["spec"]["rules"][0]["filters"][0]["requestRedirect"]
    assert redirect == {"scheme": "https", "statusCode": 308}
    client = _kind("ClientTrafficPolicy")["spec"]
    assert client["tls"]["minVersion"] == "1.2" and client["headers"]["requestID"] == "PreserveOrGenerate"
    assert _kind("EnvoyProxy")["spec"]["shutdown"]["drainTimeout"]


def test_the_router_manifest_names_the_service_the_route_sends_to():
    service = next(d for d in yaml.safe_load_all((DEPLOY / "k8s" / "manifests" / "router.yaml").read_text())
                   if d and d["kind"] == "Service")
    assert service["metadata"]["name"] == "router"
    assert any(p["port"] == 8000 for p in service["spec"]["ports"])


def test_the_vendored_schemas_say_where_they_come_from():
    for path in sorted(CRDS.glob("*.json")):
        assert re.match(r"(gateway-api v1\.6\.1|envoy-gateway v1\.9\.0): ", json.loads(path.read_text())["$comment"])
    assert Path(ROOT / "scripts" / "vendor_gateway_crds.py").is_file()
