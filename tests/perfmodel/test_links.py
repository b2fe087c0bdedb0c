"""The all-reduce over a node's peer link: RCCL over xGMI runs at its measured bus bandwidth,
a smaller share of the link's peak than NCCL reaches over NVLink."""

from __future__ import annotations

from gridplace.planner.perfmodel.hardware import gpu_link
from gridplace.specs import builtin_catalog

# RCCL 2.20.5 on 8 x MI300X (ROCm 6.2): all-reduce latency by message size, us (the RCCL column
# of mk1-project/quickreduce's README table); large messages are bandwidth-bound.
RCCL_8X_MI300X_US = {8 * 2**20: 83.12, 16 * 2**20: 148.4, 32 * 2**20: 240.4, 64 * 2**20: 426.0}


def test_xgmi_allreduce_of_large_messages_takes_what_rccl_measured() -> None:
    link = gpu_link(builtin_catalog().gpus["mi300x"], None)
    for size, measured_us in RCCL_8X_MI300X_US.items():
        predicted_us = link.allreduce_ms(size, 8) * 1e3
        assert abs(predicted_us / measured_us - 1) < 0.20, (size, predicted_us, measured_us)


def test_rccl_over_xgmi_reaches_a_smaller_share_of_its_link_than_nccl_over_nvlink() -> None:
    gpus = builtin_catalog().gpus

    def share(gpu_id: str) -> float:
        peak = gpus[gpu_id].peer_link
        assert peak is not None
        return gpu_link(gpus[gpu_id], None).bandwidth_gbyte_per_s / (peak.bandwidth_gbps / 2)

    assert share("mi300x") < share("h100-sxm")
