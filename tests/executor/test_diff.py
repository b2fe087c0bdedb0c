"""The pure diff: start, stop, move, no-op; equal replicas; GPUs that must be freed first."""

from __future__ import annotations

import pytest

from gridplace.executor.diff import Actual, ReplicaSpec, compute_diff, desired_replicas
from gridplace.specs import Assignment


def spec(
    workload: str, gpus: tuple[int, ...] = (0,), precision: str = "fp8", **kw: int
) -> ReplicaSpec:
    return ReplicaSpec(workload, gpus, precision, tensor_parallel=len(gpus), **kw)


def assignment(
    workload: str, gpus: list[int], precision: str = "fp8", share: int = 1
) -> Assignment:
    return Assignment.model_validate(
        {
            "workload": workload,
            "node": "n",
            "gpus": gpus,
            "precision": precision,
            "tensorParallel": len(gpus),
            "gpuShare": share,
        }
    )


@pytest.mark.parametrize(
    ("name", "desired", "actual", "starts", "stops", "moves"),
    [
        ("no-op", [spec("a")], [Actual("r1", spec("a"))], [], [], 0),
        (
            "start",
            [spec("a"), spec("b", (1,))],
            [Actual("r1", spec("a"))],
            [spec("b", (1,))],
            [],
            0,
        ),
        ("stop", [], [Actual("r1", spec("a"))], [], ["r1"], 0),
        (
            "move to other GPU",
            [spec("a", (1,))],
            [Actual("r1", spec("a"))],
            [spec("a", (1,))],
            ["r1"],
            1,
        ),
        (
            "precision change",
            [spec("a", (1,), "int4")],
            [Actual("r1", spec("a", (0,)))],
            [spec("a", (1,), "int4")],
            ["r1"],
            1,
        ),
        (
            "draining ones are not kept",
            [spec("a")],
            [Actual("r1", spec("a"), stopping=True)],
            [spec("a")],
            [],
            0,
        ),
    ],
)
def test_diff_cases(name, desired, actual, starts, stops, moves) -> None:
    diff = compute_diff(desired, actual)
    assert [s.spec for s in diff.starts] == starts, name
    assert [s.replica_id for s in diff.stops] == stops, name
    assert len(diff.moves) == moves, name
    assert diff.empty == (not starts and not stops)


def test_a_move_pairs_the_new_replica_with_the_old_one() -> None:
    diff = compute_diff([spec("a", (1,))], [Actual("old", spec("a", (0,)))])
    (start,) = diff.starts
    assert start.replaces == "old" and not start.in_place and start.wait_for == ()
    assert diff.stops[0].replaced_by == spec("a", (1,))


def test_a_move_onto_the_same_whole_gpu_must_free_it_first() -> None:
    diff = compute_diff([spec("a", (0,), "int4")], [Actual("old", spec("a", (0,), "fp8"))])
    (start,) = diff.starts
    assert start.in_place and start.wait_for == ("old",)


def test_half_gpus_can_overlap_while_moving() -> None:
    new = spec("a", (0,), "int4", gpu_share=2)
    diff = compute_diff([new], [Actual("old", spec("a", (0,), "fp8", gpu_share=2))])
    assert diff.starts[0].wait_for == ()


def test_a_start_waits_for_another_workload_leaving_its_gpu() -> None:
    diff = compute_diff([spec("b", (0,))], [Actual("ra", spec("a", (0,)))])
    assert diff.starts[0].wait_for == ("ra",) and diff.starts[0].replaces is None


def test_equal_assignments_are_two_replicas() -> None:
    desired = desired_replicas([assignment("a", [0], share=2), assignment("a", [0], share=2)])
    assert len(set(desired)) == 2
    diff = compute_diff(desired, [Actual("r1", desired[0])])
    assert [s.spec for s in diff.starts] == [desired[1]] and not diff.stops


def test_diff_is_deterministic_whatever_the_input_order() -> None:
    desired = [spec("a", (2,)), spec("a", (3,))]
    actual = [Actual("r2", spec("a", (1,))), Actual("r1", spec("a", (0,)))]
    first = compute_diff(desired, actual)
    second = compute_diff(list(reversed(desired)), list(reversed(actual)))
    assert first == second
    assert [(s.spec.gpus, s.replaces) for s in first.starts] == [((2,), "r1"), ((3,), "r2")]
