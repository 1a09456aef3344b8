"""rlcore.malloc: the processes that search and train keep freed buffers instead of faulting them in again.

(The web processes' side is in tests/test_predict_path.py.)"""

import textwrap

import pytest

from tests.conftest import GLIBC, minor_faults_printed

# A worker process (it imports the tasks module), then searches of 2,048 edits at once, as the instant
# model's are, after a first one that warms up whatever is allocated once: the fewest faults of three (one
# search under a loaded CI run once took 35,000 with the settings, against 0-6,000 on its own).
FAULTS_PER_SEARCH = textwrap.dedent(
    """
    import resource
    import django
    import torch

    django.setup()
    import workers.tasks  # noqa: F401 (what every worker process imports)
    from rlcore import agent, reward

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    before = (torch.rand(64, 16, 16, 3, generator=gen) * 255).to(torch.uint8)
    target_lab = reward.srgb_to_lab(before.flip(1))

    def search():
        agent.search_actions(before, target_lab, torch.zeros(64, 12), 4, 32, torch.Generator().manual_seed(1))

    search()
    counts = []
    for _ in range(3):
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        search()
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
    print(min(counts))
    """
)


def _faults_per_search(**env) -> float:
    return minor_faults_printed(FAULTS_PER_SEARCH, **env)


@pytest.mark.skipif(not GLIBC, reason="the allocator settings are glibc's")
def test_worker_processes_reuse_the_searches_buffers_instead_of_faulting_them_in():
    """Measured: 0-7,000 minor faults a search with the settings, 30,000-200,000 without (each a page zeroed by
    the kernel: 1.6-1.8 s of system time of the instant model's ~20 s at 200 pairs)."""
    tuned, untuned = _faults_per_search(), _faults_per_search(PERSONALIZE_MALLOC_TUNING="0")
    assert tuned * 5 < untuned, (tuned, untuned)


def test_the_command_line_applies_the_settings_before_any_work(monkeypatch):
    import argparse

    from rlcore import cli

    calls = []
    parser = argparse.ArgumentParser()
    parser.set_defaults(func=lambda args: calls.append("ran") or 0)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("settings") or True)
    assert cli.main([]) == 0
    assert calls == ["settings", "ran"]
