"""The openb CSV readers load the real traces and name file, line and reason for bad rows."""

from __future__ import annotations

import pytest

from gpufleet.scheduler.trace import TraceError, read_nodes, read_pods

from .conftest import DATA

POD_HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"


def test_the_default_trace_and_node_list_load_with_the_papers_totals():
    nodes = read_nodes(DATA / "openb_node_list_gpu_node.csv")
    pods = read_pods(DATA / "openb_pod_list_default.csv")
    assert len(nodes) == 1213 and sum(n.gpus for n in nodes) == 6212
    assert len(pods) == 8152 and sum(p.total_gpu_milli for p in pods) == 6_086_800


def test_gpu_spec_becomes_an_allow_list(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(POD_HEADER + "p0,1000,10,1,1000,V100M16|V100M32\n")
    assert read_pods(path)[0].gpu_models == ("V100M16", "V100M32")


@pytest.mark.parametrize("row, reason", [
    ("p0,abc,10,1,1000,", "column cpu_milli must be an integer, got 'abc'"),
    ("p0,1000,-5,1,1000,", "column memory_mib must be >= 0"),
    ("p0,1000,10,1,1500,", "gpu_milli must be <= 1000"),
    ("p0,1000,10,2,500,", "must ask for whole GPUs"),
    ("p0,1000,10", "wrong number of fields"),
])
def test_bad_pod_rows_fail_with_file_line_and_reason(tmp_path, row, reason):
    path = tmp_path / "pods.csv"
    path.write_text(POD_HEADER + "ok,1000,10,1,500,\n" + row + "\n")
    with pytest.raises(TraceError, match=f"pods.csv:3: .*{reason}"):
        read_pods(path)


def test_missing_columns_and_files_are_reported(tmp_path):
    path = tmp_path / "nodes.csv"
    path.write_text("sn,cpu_milli\nn0,1000\n")
    with pytest.raises(TraceError, match="missing column\\(s\\) memory_mib, gpu, model"):
        read_nodes(path)
    with pytest.raises(TraceError, match="reading trace .*nope.csv"):
        read_pods(tmp_path / "nope.csv")


def test_node_names_must_be_unique(tmp_path):
    path = tmp_path / "nodes.csv"
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,1000,10,1,T4\nn0,1000,10,1,T4\n")
    with pytest.raises(TraceError, match="unique"):
        read_nodes(path)
