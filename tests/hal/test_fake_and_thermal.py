"""The fake fleet (parsing, scripted telemetry over time), the sampler and store, and the thermal
arithmetic on top: throttle ratio, sustained clock ratio, p95 temperature and the forecast."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridplace.hal import (
    FleetError,
    HALError,
    Telemetry,
    TelemetrySampler,
    TelemetryStore,
    forecast_throttle_ratio,
    thermal_status,
)
from gridplace.hal.fake import FakeBackend, load_fleet
from gridplace.hal.thermal import (
    p95_temperature_c,
    percentile,
    sustained_clock_ratio,
    throttle_ratio,
)

START_S = datetime(2026, 3, 2, 0, 0, tzinfo=UTC).timestamp()  # a midnight, UTC
MINUTE_S = 60.0


class ManualClock:
    """A clock tests move by hand; ``sleep`` advances it."""

    def __init__(self, now_s: float = START_S) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.now_s += seconds


THROTTLES_AT_MINUTE_10 = """
kind: FakeFleet
devices:
  - name: NVIDIA GeForce RTX 4090
    pciDeviceId: "0x2684"
    memoryGiB: 24
    maxSmClockMhz: 2520
    telemetry: {temperatureC: 70, smClockMhz: 2520, utilizationPercent: 95,
                thermalThrottled: false, powerThrottled: false}
    script:
      - {atMinute: 10, thermalThrottled: true, smClockMhz: 1890, temperatureC: 88}
"""


def sample_minutes(fleet_text: str, minutes: int, interval_s: float = MINUTE_S) -> list[Telemetry]:
    clock = ManualClock()
    with FakeBackend(load_fleet(fleet_text), clock) as backend:
        store = TelemetryStore()
        sampler = TelemetrySampler(backend, store, interval_s, clock=clock, sleep=clock.sleep)
        taken = sampler.run(count=int(minutes * MINUTE_S / interval_s))
        assert taken == int(minutes * MINUTE_S / interval_s)
        return store.samples()


def test_card_starts_throttling_at_minute_10() -> None:
    samples = sample_minutes(THROTTLES_AT_MINUTE_10, 30)
    assert [s.timestamp_s for s in samples[:2]] == [START_S, START_S + MINUTE_S]
    throttled_minutes = [
        round((s.timestamp_s - START_S) / MINUTE_S) for s in samples if s.throttled
    ]
    assert throttled_minutes == list(range(10, 30))
    assert throttle_ratio(samples) == pytest.approx(20 / 30)
    assert sustained_clock_ratio(samples) == pytest.approx((10 * 1.0 + 20 * 1890 / 2520) / 30)
    assert p95_temperature_c(samples) == 88
    now_s = samples[-1].timestamp_s
    status = thermal_status(samples, now_s, window_hours=1)
    assert status is not None
    assert status.throttle_ratio == pytest.approx(20 / 30, abs=1e-4)
    # With history from one hour of the day only, the forecast is that hour's ratio.
    assert status.forecast_throttle_ratio == pytest.approx(20 / 30, abs=1e-3)
    # The window excludes older samples: the last 15 minutes were all throttled.
    recent = thermal_status(samples, now_s, window_hours=14.5 / 60)
    assert recent is not None and recent.throttle_ratio == 1.0


AFTERNOON_THROTTLER = """
kind: FakeFleet
devices:
  - name: NVIDIA GeForce RTX 3090
    memoryGiB: 24
    maxSmClockMhz: 1860
    cycleMinutes: 1440
    telemetry: {temperatureC: 65, smClockMhz: 1860, thermalThrottled: false}
    script:
      - {atMinute: 780, thermalThrottled: true, temperatureC: 90, smClockMhz: 1400}  # 13:00
      - {atMinute: 1020, thermalThrottled: false, temperatureC: 65, smClockMhz: 1860}  # 17:00
"""


def test_forecast_is_time_of_day_aware() -> None:
    samples = sample_minutes(AFTERNOON_THROTTLER, 3 * 1440, interval_s=10 * MINUTE_S)
    assert throttle_ratio(samples) == pytest.approx(4 / 24)
    day_4 = START_S + 3 * 86_400
    morning = forecast_throttle_ratio(samples, day_4 + 10 * 3600, horizon_hours=1)
    afternoon = forecast_throttle_ratio(samples, day_4 + 14 * 3600, horizon_hours=1)
    whole_day = forecast_throttle_ratio(samples, day_4, horizon_hours=24)
    assert morning is not None and afternoon is not None and whole_day is not None
    assert morning < 0.1
    assert afternoon > 0.8
    assert whole_day == pytest.approx(4 / 24, abs=0.03)
    # A horizon straddling 17:00 gets the throttled hour and the cool one, half each.
    straddling = forecast_throttle_ratio(samples, day_4 + 16.5 * 3600, horizon_hours=1)
    assert straddling is not None
    assert straddling == pytest.approx((afternoon + morning) / 2, abs=0.05)


def test_forecast_weights_recent_days_more() -> None:
    def day(index: int, throttled: bool) -> list[Telemetry]:
        return [
            Telemetry(0, START_S + index * 86_400 + hour * 3600, thermal_throttled=throttled)
            for hour in range(24)
        ]

    got_worse = day(0, False) + day(1, False) + day(2, True)
    got_better = day(0, True) + day(1, True) + day(2, False)
    now_s = START_S + 3 * 86_400
    worse = forecast_throttle_ratio(got_worse, now_s, horizon_hours=24)
    better = forecast_throttle_ratio(got_better, now_s, horizon_hours=24)
    assert worse is not None and better is not None
    # Plain averages would be 1/3 and 2/3: the decay pulls each toward its latest day.
    assert worse > 1 / 3
    assert better < 2 / 3


def test_nothing_known_gives_no_status() -> None:
    unknown = [Telemetry(0, START_S + i, temperature_c=50) for i in range(5)]
    assert throttle_ratio(unknown) is None
    assert thermal_status(unknown, START_S + 10) is None
    assert forecast_throttle_ratio(unknown, START_S + 10) is None


def test_lost_samples_are_left_out_and_idle_samples_do_not_count_as_derate() -> None:
    samples = [
        Telemetry(0, START_S, sm_clock_mhz=210, max_sm_clock_mhz=2100, utilization_percent=0,
                  thermal_throttled=False),
        Telemetry(0, START_S + 1, sm_clock_mhz=1890, max_sm_clock_mhz=2100,
                  utilization_percent=100, thermal_throttled=False),
        Telemetry(1, START_S + 1, healthy=False),
    ]  # fmt: skip
    assert sustained_clock_ratio(samples) == pytest.approx(0.9)
    assert throttle_ratio(samples) == 0.0


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.95) == 95.0
    assert percentile([7.0], 0.95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_scripted_loss() -> None:
    fleet = load_fleet(
        "kind: FakeFleet\ndevices:\n"
        "  - {name: NVIDIA A10, count: 2, memoryGiB: 24, lostAtMinute: 5}\n"
    )
    clock = ManualClock()
    with FakeBackend(fleet, clock) as backend:
        assert all(d.healthy for d in backend.devices())
        clock.sleep(5 * MINUTE_S)
        assert [d.healthy for d in backend.devices()] == [False, False]
        assert [s.healthy for s in backend.sample()] == [False, False]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("kind: FakeFleet\ndevices:\n  - {name: x, memoryGib: 24}\n", "memoryGib"),
        ("kind: FakeFleet\ndevices:\n  - {name: x, memoryGiB: -1}\n", "memoryGiB"),
        ("kind: FakeFleet\ndevices: [{name: x, memoryGiB: 8, pciDeviceId: '2684'}]\n", "pciDevice"),
        ("kind: Node\ndevices: []\n", "kind"),
        ("devices: [\n", "not valid YAML"),
        ("kind: FakeFleet\ndevices: []\n---\nkind: FakeFleet\ndevices: []\n", "one YAML document"),
    ],
)
def test_invalid_fleet_files_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(FleetError) as raised:
        load_fleet(text, "fleet.yaml")
    assert fragment in raised.value.message
    assert raised.value.message.startswith("fleet.yaml")


def test_store_is_bounded_and_persists(tmp_path: Path) -> None:
    database = tmp_path / "telemetry.sqlite"
    samples = [Telemetry(i % 2, START_S + i, thermal_throttled=i % 3 == 0) for i in range(10)]
    with TelemetryStore(capacity=4, path=database) as store:
        store.add(samples)
        assert len(store) == 4  # the ring keeps the newest four
        assert store.samples() == samples  # the file keeps them all
    with TelemetryStore(capacity=3, path=database) as reopened:
        assert len(reopened) == 3
        assert reopened.samples(since_s=START_S + 5) == samples[5:]
        assert reopened.samples(START_S + 2, START_S + 3) == samples[2:4]
    memory_only = TelemetryStore(capacity=4)
    memory_only.add(samples)
    assert memory_only.samples() == samples[-4:]


def test_store_prunes_old_and_excess_rows(tmp_path: Path) -> None:
    store = TelemetryStore(path=tmp_path / "t.sqlite", retention_days=1, max_rows=300)
    old = [Telemetry(0, START_S - 2 * 86_400 + i) for i in range(100)]
    new = [Telemetry(0, START_S + i) for i in range(900)]
    store.add(old + new)  # 1000 inserts: a prune runs
    kept = store.samples()
    assert len(kept) == 300
    assert kept == new[-300:]
    store.close()


def test_sampler_keeps_going_after_a_failed_read() -> None:
    class Flaky:
        name = "flaky"
        calls = 0

        def sample(self) -> list[Telemetry]:
            self.calls += 1
            if self.calls == 2:
                raise HALError("driver hiccup")
            return [Telemetry(0, float(self.calls))]

    clock = ManualClock()
    store = TelemetryStore()
    sampler = TelemetrySampler(Flaky(), store, 30.0, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert sampler.run(count=4) == 3
    assert len(store) == 3
    assert sampler.last_error is not None and "hiccup" in sampler.last_error.message
    assert clock() == START_S + 3 * 30.0  # ticks aligned to the start, no sleep after the last


def test_sampler_stops_on_event() -> None:
    stop = threading.Event()
    stop.set()
    backend = FakeBackend(load_fleet(THROTTLES_AT_MINUTE_10), ManualClock())
    with backend:
        assert TelemetrySampler(backend, TelemetryStore()).run(stop=stop) == 0
