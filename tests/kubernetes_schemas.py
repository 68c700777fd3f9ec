"""What is wrong with a Kubernetes manifest, offline: Kubernetes' own schemas for its kinds, part of the CRDs for
the operators' kinds that deploy/k8s uses.

Kubernetes' kinds go to kubernetes-validate in strict mode: an unknown field fails, as it does when kubectl
applies with its default server-side field validation. Its schemas ship inside the package, so nothing is
fetched. For a kind it has no schema of, its command line only warns and succeeds; `problems` fails instead.

KEDA's ScaledObject and TriggerAuthentication and the Prometheus Operator's ServiceMonitor are custom resources:
no package we install carries their CRDs, so the part of each CRD schema that the farm's manifests touch is
written below, field names, types and required fields as in KEDA 2.x's and prometheus-operator's CRDs, with
Kubernetes' own definitions (ObjectMeta, LabelSelector, the HPA behavior) taken from kubernetes-validate.
Fields of those CRDs the farm does not set are listed as ANY where known; any other field fails, as the API
server's strict field validation makes it fail. A real field missing here: add it, from the operator's CRD.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

# The release the manifests are checked against, pinned so that a new kubernetes-validate cannot change what
# passes. They pass 1.25 to 1.37 as well (kubernetes-validate 1.37.0); move it when clusters move.
KUBERNETES_VERSION = "1.33.0"

DEFINITIONS = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s."
ANY: dict = {}
STRING, INTEGER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
STRINGS = {"type": "object", "additionalProperties": STRING}
# prometheus-operator's Duration and LabelName patterns
DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                                          r"(([0-9]+)s)?(([0-9]+)ms)?)$"}
LABEL_NAME = {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}


def kubernetes(name: str) -> dict:
    """One of Kubernetes' own definitions, strict, as kubernetes-validate has it for KUBERNETES_VERSION."""
    return {"$ref": DEFINITIONS + name}


def fields(required: tuple[str, ...] = (), **properties: dict) -> dict:
    """An object with these fields and no others."""
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def list_of(item: dict) -> dict:
    return {"type": "array", "items": item}


def custom_resource(api_version: str, kind: str, spec: dict) -> dict:
    return fields(("apiVersion", "kind", "metadata", "spec"), apiVersion={"const": api_version},
                  kind={"const": kind}, metadata=kubernetes("apimachinery.pkg.apis.meta.v1.ObjectMeta"), spec=spec)


SCALED_OBJECT = custom_resource("keda.sh/v1alpha1", "ScaledObject", fields(
    ("scaleTargetRef", "triggers"),
    scaleTargetRef=fields(("name",), name=STRING, kind=STRING, apiVersion=STRING, envSourceContainerName=STRING),
    pollingInterval=INTEGER, cooldownPeriod=INTEGER, initialCooldownPeriod=INTEGER, idleReplicaCount=INTEGER,
    minReplicaCount=INTEGER, maxReplicaCount=INTEGER, fallback=ANY,
    advanced=fields(restoreToOriginalReplicaCount=BOOLEAN, scalingModifiers=ANY, horizontalPodAutoscalerConfig=fields(
        name=STRING, behavior=kubernetes("api.autoscaling.v2.HorizontalPodAutoscalerBehavior"))),
    triggers=list_of(fields(
        ("type", "metadata"), type=STRING, name=STRING, metricType=STRING, useCachedMetrics=BOOLEAN,
        metadata=STRINGS,  # KEDA reads every value as a string: a bare number is refused
        authenticationRef=fields(("name",), name=STRING, kind=STRING))),
))

TRIGGER_AUTHENTICATION = custom_resource("keda.sh/v1alpha1", "TriggerAuthentication", fields(
    secretTargetRef=list_of(fields(("parameter", "name", "key"), parameter=STRING, name=STRING, key=STRING)),
    podIdentity=ANY, env=ANY, configMapTargetRef=ANY, boundServiceAccountToken=ANY, hashiCorpVault=ANY,
    azureKeyVault=ANY, awsSecretManager=ANY, gcpSecretManager=ANY,
))

RELABELING = fields(sourceLabels=list_of(LABEL_NAME), separator=STRING, targetLabel=STRING, regex=STRING,
                    modulus=INTEGER, replacement=STRING, action=STRING)

SERVICE_MONITOR = custom_resource("monitoring.coreos.com/v1", "ServiceMonitor", fields(
    ("selector",),
    selector=kubernetes("apimachinery.pkg.apis.meta.v1.LabelSelector"),
    endpoints=list_of(fields(
        port=STRING, targetPort=ANY, path=STRING, scheme=STRING, params=ANY, interval=DURATION,
        scrapeTimeout=DURATION, honorLabels=BOOLEAN, honorTimestamps=BOOLEAN, tlsConfig=ANY, authorization=ANY,
        basicAuth=ANY, bearerTokenSecret=ANY, relabelings=list_of(RELABELING),
        metricRelabelings=list_of(RELABELING))),
    jobLabel=STRING, namespaceSelector=ANY, targetLabels=list_of(STRING), podTargetLabels=list_of(STRING),
    sampleLimit=INTEGER, attachMetadata=ANY,
))

CUSTOM_RESOURCES = {(s["properties"]["apiVersion"]["const"], s["properties"]["kind"]["const"]): s
                    for s in (SCALED_OBJECT, TRIGGER_AUTHENTICATION, SERVICE_MONITOR)}


@cache
def kubernetes_definitions() -> Registry:
    folder = files("kubernetes_validate") / "kubernetes-json-schema" / f"v{KUBERNETES_VERSION}-local-strict"
    definitions = Resource.from_contents(json.loads((folder / "_definitions.json").read_text()))
    return definitions @ Registry()


def where(path) -> str:
    return ".".join(str(step) for step in path) or "(top)"


def problems(document: dict) -> str | None:
    """None if the document is a valid object of its kind, else where and what is wrong."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key in CUSTOM_RESOURCES:
        validator = jsonschema.Draft202012Validator(CUSTOM_RESOURCES[key], registry=kubernetes_definitions())
        error = jsonschema.exceptions.best_match(validator.iter_errors(document))
        return None if error is None else f"{where(error.absolute_path)}: {error.message}"
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{where(error.path)}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError as error:
        return (f"{error.message}: a typo in apiVersion or kind? For a custom resource, add the part of its CRD "
                f"to CUSTOM_RESOURCES in tests/kubernetes_schemas.py")
    return None
