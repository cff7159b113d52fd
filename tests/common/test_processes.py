"""medseg.common.processes: the cores a process may use."""

import os

import pytest

from medseg.common import processes


def test_usable_cpus_follows_the_affinity_mask(monkeypatch):
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity call on this platform")
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert processes.usable_cpus() == 1


def test_usable_cpus_without_an_affinity_call_uses_the_machine_count(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # the count can be unknown
    assert processes.usable_cpus() == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert processes.usable_cpus() == 6
