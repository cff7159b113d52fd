"""medseg.common.processes: the cores a process may use."""

import os

from medseg.common import processes


def test_usable_cpus_follows_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert processes.usable_cpus() == 1


def test_usable_cpus_without_an_affinity_call_uses_the_machine_count(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # the count can be unknown
    assert processes.usable_cpus() == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert processes.usable_cpus() == 6
