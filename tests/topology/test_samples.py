"""The ingest API: documents and arrays in, per-pair summaries out; pooling, loss, expiry, and
malformed input rejected with a clear ``ProbeDataError``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gridplace.specs import SpecError, load_bundle
from gridplace.topology import DecayPolicy, ProbeDataError, SampleLog
from gridplace.topology.samples import PairTable, to_posix_s
from tests.topology.helpers import probes, sample

T0 = datetime(2026, 11, 26, 12, tzinfo=UTC)


def row(table: PairTable, a: str, b: str) -> int:
    ids = {name: i for i, name in enumerate(table.endpoints)}
    lo, hi = sorted((ids[a], ids[b]))
    (index,) = np.flatnonzero((table.lo == lo) & (table.hi == hi))
    return int(index)


def test_both_directions_pool_into_one_pair() -> None:
    log = SampleLog()
    log.add_probes(probes(sample("a", "b", 10, 11), sample("b", "a", 12, 13, 14)))
    table = log.summarize(DecayPolicy(half_life_s=None, max_age_s=None))
    assert len(table) == 1
    assert table.samples[0] == 5
    assert table.p50_ms[0] == 12.0


def test_lost_probes_give_a_loss_ratio_and_all_lost_means_unreachable() -> None:
    log = SampleLog()
    log.add_probes(
        probes(
            sample("a", "b", 10, 10, 10, lost=1),
            sample("a", "c", lost=3, error="connection refused"),
        )
    )
    table = log.summarize(DecayPolicy(half_life_s=None, max_age_s=None))
    partly = row(table, "a", "b")
    dead = row(table, "a", "c")
    assert table.loss_ratio[partly] == pytest.approx(0.25)
    assert table.reachable.tolist()[partly] is True
    assert table.reachable.tolist()[dead] is False
    assert table.loss_ratio[dead] == 1.0
    assert np.isnan(table.p50_ms[dead])


def test_now_defaults_to_the_newest_sample_and_old_pairs_expire() -> None:
    old = (T0 - timedelta(days=10)).isoformat()
    log = SampleLog()
    log.add_probes(probes(sample("a", "b", 5, measuredAt=old), sample("a", "c", 7)))
    table = log.summarize(DecayPolicy(max_age_s=7 * 86_400.0))
    assert table.now_s == to_posix_s(T0)
    assert table.endpoints[table.lo[0]] == "a" and table.endpoints[table.hi[0]] == "c"
    assert len(table) == 1  # a-b expired: unknown again, not 'unreachable'
    kept = SampleLog()
    kept.add_probes(probes(sample("a", "b", 5, measuredAt=old), sample("a", "c", 7)))
    assert len(kept.summarize(DecayPolicy(max_age_s=None))) == 2


def test_sample_time_overrides_document_time_and_decay_uses_it() -> None:
    hour_ago = (T0 - timedelta(hours=1)).isoformat()
    log = SampleLog()
    log.add_probes(probes(sample("a", "b", 100, measuredAt=hour_ago), sample("a", "b", 10, 10)))
    table = log.summarize(DecayPolicy(half_life_s=3600.0, max_age_s=None))
    # Weights: 100 ms at 0.5, two 10 ms samples at 1 each -> p50 = 10, p99 = 100.
    assert (table.p50_ms[0], table.p99_ms[0]) == (10.0, 100.0)
    assert table.effective_samples[0] == pytest.approx(2.5**2 / 2.25)


def test_undated_samples_count_as_now() -> None:
    log = SampleLog()
    log.add_probes(probes(sample("a", "b", 5), measured_at=None))
    table = log.summarize(DecayPolicy(max_age_s=0.0), now_s=to_posix_s(T0))
    assert table.samples.tolist() == [1]


def test_arrays_and_documents_agree() -> None:
    from_doc = SampleLog()
    from_doc.add_probes(probes(sample("a", "region/eu-west", 3, 4, 9)))
    from_arrays = SampleLog()
    added = from_arrays.add_arrays(
        ["region/eu-west", "a"], [1, 1, 0], [0, 0, 1], [3, 4, 9], to_posix_s(T0)
    )
    assert added == 3
    one, two = from_doc.summarize(), from_arrays.summarize()
    assert (one.p50_ms.tolist(), one.p99_ms.tolist()) == (two.p50_ms.tolist(), two.p99_ms.tolist())
    assert one.now_s == two.now_s == to_posix_s(T0)


@pytest.mark.parametrize(
    ("endpoints", "source", "target", "rtt", "message"),
    [
        (["a", "b"], [0], [1], [float("nan")], "rtt_ms[0]"),
        (["a", "b"], [0, 0], [1, 1], [1.0, -2.0], "rtt_ms[1]"),
        (["a", "b"], [0], [1], [70_000.0], "from 0 to 60000"),
        (["a", "b"], [0, 0], [1], [1.0, 2.0], "same length"),
        (["a", "b"], [0], [2], [1.0], "target[0] = 2"),
        (["a", "b"], [0], [0], [1.0], "same endpoint"),
        (["a", "Bad Name"], [0], [1], [1.0], "'Bad Name'"),
        (["a", "region/"], [0], [1], [1.0], "'region/'"),
    ],
)
def test_malformed_arrays_are_rejected_with_the_offender_named(
    endpoints: list[str], source: list[int], target: list[int], rtt: list[float], message: str
) -> None:
    log = SampleLog()
    with pytest.raises(ProbeDataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        log.add_arrays(endpoints, source, target, rtt)
    assert log.sample_count == 0
    assert log.endpoints == ()  # a rejected call leaves nothing behind


def test_malformed_lost_counts_are_rejected() -> None:
    with pytest.raises(ProbeDataError, match="lost"):
        SampleLog().add_lost(["a", "b"], [0], [1], [-1])


def test_empty_log_summarises_to_an_empty_table() -> None:
    table = SampleLog().summarize()
    assert len(table) == 0


@pytest.mark.parametrize(
    ("sample_yaml", "field"),
    [
        ("{source: a, target: b, rttMs: [-1]}", "spec.samples[0].rttMs[0]"),
        ("{source: a, target: a, rttMs: [1]}", "spec.samples[0]"),
        ("{source: a, target: b}", "spec.samples[0]"),
        ("{source: Region/x, target: b, rttMs: [1]}", "spec.samples[0].source"),
    ],
)
def test_malformed_probe_documents_never_reach_the_ingest(
    tmp_path: Path, sample_yaml: str, field: str
) -> None:
    path = tmp_path / "probes.yaml"
    path.write_text(
        "apiVersion: gridplace/v1alpha1\nkind: LatencyProbes\nmetadata: {name: p}\n"
        f"spec:\n  samples:\n    - {sample_yaml}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_bundle([path])
    assert [issue.field for issue in caught.value.issues] == [field]
    assert all(issue.line == 6 for issue in caught.value.issues)
