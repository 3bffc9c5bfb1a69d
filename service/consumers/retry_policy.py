"""How long a transiently failed job waits before its next delivery."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

SQS_MAX_VISIBILITY_S = 43_200
_RNG = random.Random()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff from the receive count, with jitter, capped.

    Half the delay is fixed and half random ("equal jitter"), so retries of jobs that failed
    together spread out without ever retrying at once.
    """

    base_s: float
    cap_s: float

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> int:
        """Seconds to hide the message after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** max(0, attempt - 1))
        jittered = ceiling / 2 + (rng or _RNG).uniform(0, ceiling / 2)
        return max(1, min(SQS_MAX_VISIBILITY_S, math.ceil(jittered)))
