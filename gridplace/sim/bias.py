"""The systematic part of the truth: how a whole GPU family on one engine misses the model.

Owns: ``TruthBias`` (where a replica's systematic step-time factors come from), bias rules set by
hand (``--truth-bias``, ``--truth-bias-file``) and their validation, and the ``StepBias`` a
replica's step times are multiplied by. Must not: be read by the planner.

For one replica, the first that applies:
1. a rule set by hand: the most specific rule matching its GPU family and engine (family and
   engine > one of them > neither); its factors are constants over batch and tokens;
2. a measured configuration (``measured``: same GPU, model, precision, engine and TP as a
   measured one): the measured / model ratio at the step's batch and tokens;
3. a drawn bias (``drawn``): one lognormal factor per GPU family x engine x phase, median 1,
   sigma the model's measured miss (``measured.miss_sigma``), drawn once per run seed;
4. none (factor 1).
Factors multiply the GPU part of a step (not the engine's host overhead), like the per-node spread
(``truth``), on top of which they apply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import Field, ValidationError

from gridplace.sim.errors import SimSettingsError
from gridplace.sim.measured import ConfigKey, RatioField, miss_sigma, ratio_field
from gridplace.sim.seeds import PURPOSE_BIAS, stream
from gridplace.specs.common import Architecture, Engine, StrictModel

MAX_RULES = 256
Factor = float  # step time multiplier (> 1: slower than the model)
FACTOR_BOUNDS = (0.05, 20.0)


class BiasRule(StrictModel):
    """Step-time factors for replicas of a GPU family on an engine (omitted: any)."""

    decode: float = Field(ge=FACTOR_BOUNDS[0], le=FACTOR_BOUNDS[1])
    prefill: float = Field(ge=FACTOR_BOUNDS[0], le=FACTOR_BOUNDS[1])
    family: Architecture | None = None
    engine: Engine | None = None

    def matches(self, family: Architecture, engine: Engine) -> bool:
        return self.family in (None, family) and self.engine in (None, engine)

    @property
    def specificity(self) -> int:
        return (self.family is not None) + (self.engine is not None)


@dataclass(frozen=True)
class TruthBias:
    """Where systematic step-time factors come from (see the module docstring)."""

    rules: tuple[BiasRule, ...] = ()
    measured: bool = True
    drawn: bool = True

    @classmethod
    def none(cls) -> TruthBias:
        return cls(measured=False, drawn=False)

    @classmethod
    def fixed(cls, decode: Factor, prefill: Factor) -> TruthBias:
        """One factor for every replica (``--truth-bias DECODE,PREFILL``)."""
        return cls(rules=(_rule({"decode": decode, "prefill": prefill}, "--truth-bias"),))

    @classmethod
    def from_rules(cls, data: Any, source: str) -> TruthBias:
        """Rules from a parsed document (``--truth-bias-file``): a list of mappings with
        ``decode``, ``prefill`` and optional ``family`` and ``engine``."""
        if not isinstance(data, list) or not data:
            raise SimSettingsError(source, type(data).__name__, "must be a non-empty list of rules")
        if len(data) > MAX_RULES:
            raise SimSettingsError(source, len(data), f"at most {MAX_RULES} rules")
        return cls(rules=tuple(_rule(item, f"{source}[{i}]") for i, item in enumerate(data)))

    def rule_for(self, family: Architecture, engine: Engine) -> BiasRule | None:
        found = [r for r in self.rules if r.matches(family, engine)]
        return max(found, key=lambda r: r.specificity) if found else None


def _rule(data: Any, where: str) -> BiasRule:
    try:
        return BiasRule.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise SimSettingsError(
            f"{where}.{path}" if path else where, first.get("input"), first["msg"]
        ) from None


class StepBias(Protocol):
    """Systematic multipliers of a replica's step times (GPU part)."""

    def decode(self, batch: int, context_tokens: int) -> Factor: ...

    def prefill(self, prompt_tokens: int) -> Factor: ...


@dataclass(frozen=True)
class ConstantBias:
    decode_factor: Factor = 1.0
    prefill_factor: Factor = 1.0

    def decode(self, batch: int, context_tokens: int) -> Factor:
        return self.decode_factor

    def prefill(self, prompt_tokens: int) -> Factor:
        return self.prefill_factor


NO_BIAS = ConstantBias()


@dataclass(frozen=True)
class MeasuredBias:
    """Measured / model ratios where measured; ``otherwise`` for a phase with no measurements."""

    decode_field: RatioField | None
    prefill_field: RatioField | None
    otherwise: ConstantBias = NO_BIAS

    def decode(self, batch: int, context_tokens: int) -> Factor:
        if self.decode_field is None:
            return self.otherwise.decode_factor
        return self.decode_field.at(batch, context_tokens)

    def prefill(self, prompt_tokens: int) -> Factor:
        if self.prefill_field is None:
            return self.otherwise.prefill_factor
        return self.prefill_field.at(1, prompt_tokens)


@dataclass
class BiasBook:
    """The run's systematic factors, drawn lazily per GPU family x engine."""

    settings: TruthBias
    seed: int
    _drawn: dict[tuple[Architecture, Engine], ConstantBias] = field(default_factory=dict)

    def drawn(self, family: Architecture, engine: Engine) -> ConstantBias:
        key = (family, engine)
        found = self._drawn.get(key)
        if found is None:
            sigma = miss_sigma()
            z = stream(self.seed, f"{family.value}/{engine.value}", PURPOSE_BIAS).standard_normal(2)
            found = ConstantBias(
                math.exp(sigma["decode"] * float(z[0])), math.exp(sigma["prefill"] * float(z[1]))
            )
            self._drawn[key] = found
        return found

    def for_replica(self, config: ConfigKey, family: Architecture) -> StepBias:
        engine = Engine(config[3])
        rule = self.settings.rule_for(family, engine)
        if rule is not None:
            return ConstantBias(rule.decode, rule.prefill)
        otherwise = self.drawn(family, engine) if self.settings.drawn else NO_BIAS
        if self.settings.measured:
            decode, prefill = ratio_field(config, "decode"), ratio_field(config, "prefill")
            if decode is not None or prefill is not None:
                return MeasuredBias(decode, prefill, otherwise)
        return otherwise


def describe(bias: TruthBias) -> Mapping[str, object]:
    """The settings for a report (JSON)."""
    return {
        "rules": [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in bias.rules],
        "measured": bias.measured,
        "drawn": bias.drawn,
    }


def rules_summary(rules: Sequence[BiasRule]) -> str:
    parts = []
    for rule in rules:
        scope = "/".join(p for p in (rule.family, rule.engine) if p is not None) or "all"
        parts.append(f"{scope} decode x{rule.decode:g} prefill x{rule.prefill:g}")
    return ", ".join(parts)
