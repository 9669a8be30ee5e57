"""Retry delays, the shape AWS's programs use (``session-manager-protocol.md`` §2.9), in one place.

The plugin and the agent retry a dial or a ResumeSession after 100-200 ms, doubling each time, at most
5 s apart. :class:`Backoff` gives those delays; with a ``window`` it stops once the next wait would end
past it, so a caller knows when to give up without counting attempts (a server restart takes tens of
seconds: a count of five covers only 3-6 s). Pure: the caller sleeps, on whatever clock it has.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Final

from openssm.protocol.values import Value

INITIAL_MIN: Final = 0.1
INITIAL_MAX: Final = 0.2
FACTOR: Final = 2.0
MAX_DELAY: Final = 5.0


class Backoff(Value):
    """Exponential delays: the first drawn from ``[initial_min, initial_max]``, each next one
    ``factor`` times longer, capped at ``maximum``.

    ``attempts`` bounds how many delays :meth:`delays` yields; ``window`` bounds their sum (seconds
    from the first failure to the last retry). Either, both or neither (then it never ends)."""

    __slots__ = ("attempts", "factor", "initial_max", "initial_min", "maximum", "window")
    initial_min: float
    initial_max: float
    factor: float
    maximum: float
    attempts: int | None
    window: float | None

    def __init__(
        self,
        initial_min: float = INITIAL_MIN,
        initial_max: float = INITIAL_MAX,
        factor: float = FACTOR,
        maximum: float = MAX_DELAY,
        attempts: int | None = None,
        window: float | None = None,
    ) -> None:
        if not 0 <= initial_min <= initial_max:
            raise ValueError("need 0 <= initial_min <= initial_max")
        if factor < 1 or maximum < initial_min:
            raise ValueError("need factor >= 1 and maximum >= initial_min")
        if window is not None and window < 0:
            raise ValueError("window must not be negative")
        object.__setattr__(self, "initial_min", initial_min)
        object.__setattr__(self, "initial_max", initial_max)
        object.__setattr__(self, "factor", factor)
        object.__setattr__(self, "maximum", maximum)
        object.__setattr__(self, "attempts", attempts)
        object.__setattr__(self, "window", window)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits between attempts, in order (a fresh random start each call)."""
        draw = rng.uniform if rng is not None else random.uniform
        delay = draw(self.initial_min, self.initial_max)
        spent = 0.0
        count = 0
        while self.attempts is None or count < self.attempts:
            step = min(self.maximum, delay)
            if self.window is not None and spent + step > self.window:
                remaining = self.window - spent
                if remaining <= 0:
                    return
                step = remaining  # one last try at the very end of the window
            yield step
            spent += step
            count += 1
            delay = min(self.maximum, delay * self.factor)


# AWS's plugin: five attempts (dial, or ResumeSession), 100-200 ms first, x2, at most 5 s.
AWS_RETRIES: Final = Backoff(attempts=4)
