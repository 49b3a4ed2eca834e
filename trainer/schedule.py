"""Learning-rate schedules: a named schedule and its parameters, as Keras schedules.

A schedule is a function of the optimizer's step count, which checkpoints hold, so a
resumed run continues it exactly. Keras' own schedule classes are used, so checkpoints and
models stay loadable without `trainer`.

>>> ScheduleConfig("cosine", warmup_steps=100).to_dict()["name"]
'cosine'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from seqdata.checks import check_choice, check_int, check_number
from trainer.errors import ConfigError

SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class ScheduleConfig:
    """How the learning rate moves over a run.

    Args:
        name: "constant" (the learning rate throughout) or "cosine" (a linear warm-up
            from 0 over ``warmup_steps``, then a cosine decay to ``final_fraction`` of the
            learning rate at the run's last step).
        warmup_steps: cosine: steps of linear warm-up.
        final_fraction: cosine: the last step's rate as a fraction of the peak.
    """

    name: str = "constant"
    warmup_steps: int = 0
    final_fraction: float = 0.0

    def __post_init__(self) -> None:
        check_choice("schedule", self.name, SCHEDULES, error=ConfigError)
        check_int("warmup_steps", self.warmup_steps, 0, error=ConfigError)
        check_number("final_fraction", self.final_fraction, error=ConfigError)
        if not 0 <= self.final_fraction <= 1:
            raise ConfigError(f"final_fraction must be in 0..1, got {self.final_fraction}")
        if self.name == "constant" and (self.warmup_steps or self.final_fraction):
            raise ConfigError(f"warmup_steps={self.warmup_steps} and final_fraction="
                              f"{self.final_fraction} apply to schedule=cosine only")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (config.json)."""
        return asdict(self)

    def learning_rate(self, peak: float, total_steps: int) -> Any:
        """What the optimizer takes: ``peak`` itself, or a Keras schedule over
        ``total_steps`` steps."""
        if self.name == "constant":
            return peak
        import keras

        warmup = min(self.warmup_steps, max(total_steps - 1, 0))
        decay = max(total_steps - warmup, 1)
        if not warmup:
            return keras.optimizers.schedules.CosineDecay(peak, decay, alpha=self.final_fraction)
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay, alpha=self.final_fraction, warmup_target=peak, warmup_steps=warmup)


def current_learning_rate(optimizer: Any) -> float:
    """The rate the optimizer applies at its next step."""
    import keras

    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
