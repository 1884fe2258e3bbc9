"""The placement-overlap rule without an API server: one namespace-wide PlacementPolicy per namespace
plus any number with different podSelectors; two with the same podSelector (as written, in any
order) or two namespace-wide ones are reported on the later object's field and line."""

from __future__ import annotations

from gpufleet.validate.documents import read
from gpufleet.validate.rules import check
from tests.gitops.conftest import FIXTURES
from tests.gitops.test_validate_fixtures import expectations


def placement_findings(name: str) -> set[tuple[int, str, str, str]]:
    return {(f.line, f.rule, f.field, f.message) for f in check(read(FIXTURES / name))
            if f.rule == "placement-overlap"}


def test_a_namespace_wide_policy_and_policies_with_different_pod_selectors_may_share_a_namespace():
    assert placement_findings("good/placement-pod-selectors.yaml") == set()


def test_two_policies_with_the_same_pod_selector_or_two_namespace_wide_ones_are_reported():
    path = "bad/placement-same-pod-selector.yaml"
    found = placement_findings(path)
    expected = expectations(FIXTURES / path)
    assert len(found) == len(expected) == 2
    for line, rule, field, text in expected:
        assert any(f[:3] == (line, rule, field) and text in f[3] for f in found), (expected, found)


def test_the_existing_overlap_fixture_is_still_reported():
    found = placement_findings("bad/placement-overlap.yaml")
    assert {(line, field) for line, _, field, _ in found} == \
        {(line, field) for line, _, field, _ in expectations(FIXTURES / "bad/placement-overlap.yaml")}
