"""Checking a config repository: every document against the real API server, then the rules.

Order: read every YAML file (unreadable input stops here), start the throwaway API server, install
gpufleet's CRDs and the CRDs found in the repository, dry-run create every other object (in parallel),
then run the cross-object rules of :mod:`gpufleet.validate.rules`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gpufleet.core.config import crd as gpufleet_crds
from gpufleet.validate import rules
from gpufleet.validate.apiserver import DryRunServer, Verdict
from gpufleet.validate.documents import Document, files_under, is_api_object, read
from gpufleet.validate.rules import Finding

log = logging.getLogger(__name__)

CRD_API_VERSION = "apiextensions.k8s.io/v1"
_STRICT = re.compile(r'(unknown|duplicate) field "([^"]+)"')
_YAML_DUPLICATE = re.compile(r'line (\d+): key "([^"]+)" already set in map')
_GO_TYPE = re.compile(r"cannot unmarshal (\w+) into Go struct field \w+\.([\w.]+) of type (\w+)")


@dataclass(frozen=True)
class Report:
    files: int
    documents: int
    findings: tuple[Finding, ...]
    seconds: float

    def to_json(self) -> str:
        return json.dumps({"files": self.files, "documents": self.documents, "seconds": round(self.seconds, 2),
                           "findings": [vars(f) for f in self.findings]}, indent=2)


def load(paths: Sequence[Path]) -> tuple[int, list[Document]]:
    """(number of files, documents); raises UnreadableInput."""
    files = files_under(paths)
    docs = [doc for path in files for doc in read(path)]
    return len(files), docs


def _is_crd(doc: Document) -> bool:
    return doc.api_version == CRD_API_VERSION and doc.kind == "CustomResourceDefinition"


def api_findings(doc: Document, verdict: Verdict) -> list[Finding]:
    """The server's refusal as findings on the fields it names."""
    if verdict.accepted:
        return []
    strict = _STRICT.findall(verdict.message)
    if strict:
        return [rules.finding(doc, path, f"{what} field (the API server refuses it with strict field validation)",
                              "apiserver") for what, path in strict]
    duplicates = _YAML_DUPLICATE.findall(verdict.message)
    if duplicates:  # line numbers count from the document's first line
        return [rules.Finding(str(doc.path), doc.line + int(line) - 1, doc.ref, "",
                              f"duplicate key {key!r} (the API server refuses it with strict field validation)",
                              "apiserver") for line, key in duplicates]
    wrong_type = _GO_TYPE.search(verdict.message)
    if wrong_type:
        given, path, wanted = wrong_type.groups()
        return [rules.finding(doc, path, f"must be of type {wanted}, not {given} ({verdict.message})", "apiserver")]
    if verdict.causes:
        return [rules.finding(doc, "" if path == "<nil>" else path, message, "apiserver")
                for path, message in verdict.causes]
    return [rules.finding(doc, "", verdict.message, "apiserver")]


def check(paths: Sequence[Path], *, bin_dir: Path | None = None, workers: int = 8,
          server: DryRunServer | None = None) -> Report:
    """Validate every document under ``paths``; a running ``server`` is reused (tests, benchmarks)."""
    start = time.monotonic()
    own = server is None
    server = server or DryRunServer(bin_dir)
    starting = None
    if own:  # the API server starts (about 3 s) while the files are read
        pool = ThreadPoolExecutor(max_workers=1)
        starting = pool.submit(server.start)
        pool.shutdown(wait=False)
    try:
        file_count, docs = load(paths)
    except BaseException:
        if starting is not None:
            with contextlib.suppress(Exception):
                starting.result()
            server.close()
        raise
    objects = [d for d in docs if is_api_object(d)]
    findings: list[Finding] = []
    for doc in objects:
        if not doc.api_version or not doc.kind:
            findings.append(rules.finding(doc, "", "not a Kubernetes object (apiVersion and kind are required)",
                                          "apiserver"))
    typed = [d for d in objects if d.api_version and d.kind]
    try:
        if starting is not None:
            starting.result()
        findings += _check_with(server, typed, workers)
    finally:
        if own:
            server.close()
    findings += rules.check(typed)
    findings.sort(key=lambda f: (f.path, f.line, f.field, f.message))
    return Report(file_count, len(docs), tuple(findings), time.monotonic() - start)


def _check_with(server: DryRunServer, docs: list[Document], workers: int) -> list[Finding]:
    findings: list[Finding] = []
    crds = [d for d in docs if _is_crd(d)]
    for doc, (_, verdict) in zip(crds, _install_each(server, crds), strict=True):
        findings += api_findings(doc, verdict)
    repo_crd_names = {d.name for d in crds}
    server.install_crds(c for k in gpufleet_crds.KINDS if (c := gpufleet_crds.crd(k))["metadata"]["name"]
                        not in repo_crd_names)
    others = [d for d in docs if not _is_crd(d)]
    for doc in others:  # discovery once per apiVersion, before the parallel part
        server.resource(doc.api_version, doc.kind)

    def one(doc: Document) -> list[Finding]:
        resource = server.resource(doc.api_version, doc.kind)
        if resource is None:
            return [rules.finding(doc, "kind", f"the API server has no kind {doc.kind} in {doc.api_version} "
                                  "(and no CRD under the given paths defines it)", "apiserver")]
        return api_findings(doc, server.dry_run_create(resource, doc.namespace, doc.text.encode(),
                                                       name=str(doc.metadata.get("name") or "")))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for result in pool.map(one, others):
            findings += result
    return findings


def _install_each(server: DryRunServer, crds: list[Document]) -> list[tuple[str, Verdict]]:
    """Create each repository CRD for real (others' custom resources need it); one verdict per CRD."""
    verdicts = []
    for doc in crds:
        refused = server.install_crds([doc.obj])
        verdicts.append(refused[0] if refused else (doc.name, Verdict(True, 201)))
    return verdicts
