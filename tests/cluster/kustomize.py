"""A minimal kustomize for the tests: renders the kustomizations under deploy/ into the objects
`kubectl apply -k` would send, so the real API server can dry-run them (no kustomize binary here).

Supported, as kustomize does it: ``resources`` (files and folders with a kustomization),
``namespace`` (set on namespaced objects), ``labels`` (``pairs`` on metadata; with
``includeSelectors`` also on selectors and pod templates; with ``includeTemplates`` on pod templates),
``commonLabels``, ``images`` (``newName``/``newTag``/``digest``), ``configMapGenerator`` (``files``
and ``literals``, with a content-hash name suffix unless ``generatorOptions.disableNameSuffixHash``,
and references in pod templates renamed). Any other field fails loudly, so a kustomization that
grows a feature this renderer lacks is not silently half-rendered.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "commonLabels", "images",
             "configMapGenerator", "generatorOptions"}
#: Kinds that have no namespace (the ones deploy/ uses, and their usual companions).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass",
                  "StorageClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
                  "APIService", "Node", "PersistentVolume"}
POD_TEMPLATE_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"}


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not do, or points at a missing file."""


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects of the kustomization in ``directory``."""
    path = directory / "kustomization.yaml"
    try:
        kustomization = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise KustomizeError(f"reading {path}: {err}") from err
    unknown = sorted(set(kustomization) - SUPPORTED)
    if unknown:
        raise KustomizeError(f"{path}: {', '.join(unknown)} not supported by tests/cluster/kustomize.py")
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources") or []:
        target = directory / entry
        if target.is_dir():
            objects.extend(render(target))
        elif target.is_file():
            objects.extend(d for d in yaml.safe_load_all(target.read_text()) if isinstance(d, dict))
        else:
            raise KustomizeError(f"{path}: resource {entry} does not exist")
    renames = {}
    options = kustomization.get("generatorOptions") or {}
    for generator in kustomization.get("configMapGenerator") or []:
        config_map = _config_map(directory, generator, hashed=not options.get("disableNameSuffixHash"))
        renames[generator["name"]] = config_map["metadata"]["name"]
        objects.append(config_map)
    namespace = kustomization.get("namespace")
    for obj in objects:
        if namespace and obj.get("kind") not in CLUSTER_SCOPED:
            obj.setdefault("metadata", {})["namespace"] = namespace
        for template in _pod_templates(obj):
            _rename_config_maps(template, renames)
            _set_images(template, kustomization.get("images") or [])
    for entry in kustomization.get("labels") or []:
        for obj in objects:
            _add_labels(obj, entry.get("pairs") or {}, bool(entry.get("includeSelectors")),
                        bool(entry.get("includeSelectors") or entry.get("includeTemplates")))
    if kustomization.get("commonLabels"):
        for obj in objects:
            _add_labels(obj, kustomization["commonLabels"], True, True)
    return objects


def referenced_files(directory: Path) -> set[Path]:
    """Files a kustomization reads (resources and generator inputs), recursively."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
    files = {directory / "kustomization.yaml"}
    for entry in kustomization.get("resources") or []:
        target = directory / entry
        files |= referenced_files(target) if target.is_dir() else {target}
    for generator in kustomization.get("configMapGenerator") or []:
        for item in generator.get("files") or []:
            files.add(directory / item.split("=", 1)[-1])
    return {f.resolve() for f in files}


def _config_map(directory: Path, generator: dict[str, Any], hashed: bool) -> dict[str, Any]:
    data: dict[str, str] = {}
    for item in generator.get("files") or []:
        key, _, source = item.partition("=") if "=" in item else (Path(item).name, "", item)
        try:
            data[key] = (directory / source).read_text()
        except OSError as err:
            raise KustomizeError(f"configMapGenerator {generator.get('name')}: {err}") from err
    for literal in generator.get("literals") or []:
        key, _, value = literal.partition("=")
        data[key] = value
    name = generator["name"]
    if hashed:
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
        name = f"{name}-{digest}"
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def _pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj.get("kind") in POD_TEMPLATE_KINDS:
        template = (obj.get("spec") or {}).get("template")
        return [template] if isinstance(template, dict) else []
    return []


def _rename_config_maps(template: dict[str, Any], renames: dict[str, str]) -> None:
    spec = template.get("spec") or {}
    for volume in spec.get("volumes") or []:
        ref = volume.get("configMap")
        if ref and ref.get("name") in renames:
            ref["name"] = renames[ref["name"]]
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef")
            if ref and ref.get("name") in renames:
                ref["name"] = renames[ref["name"]]
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
            if ref and ref.get("name") in renames:
                ref["name"] = renames[ref["name"]]


def _set_images(template: dict[str, Any], images: list[dict[str, Any]]) -> None:
    spec = template.get("spec") or {}
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        image = container.get("image", "")
        base = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image.split("@")[0]
        for rule in images:
            if rule.get("name") != base:
                continue
            name = rule.get("newName", base)
            if rule.get("digest"):
                container["image"] = f"{name}@{rule['digest']}"
            else:
                tag = rule.get("newTag") or (image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else "")
                container["image"] = f"{name}:{tag}" if tag else name


def _add_labels(obj: dict[str, Any], pairs: dict[str, str], selectors: bool, templates: bool) -> None:
    obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
    if spec is None:
        return
    if templates:
        for template in _pod_templates(obj):
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    if selectors:
        selector = spec.get("selector")
        if obj.get("kind") == "Service":
            spec["selector"] = {**(selector or {}), **pairs}
        elif isinstance(selector, dict):
            selector.setdefault("matchLabels", {}).update(pairs)

