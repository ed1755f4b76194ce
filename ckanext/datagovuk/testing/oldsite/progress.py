"""How the generator reports progress: a callable taking one line, or None."""
from __future__ import annotations

from typing import Callable, Optional

Progress = Optional[Callable[[str], None]]


def say(progress: Progress, message: str) -> None:
    if progress:
        progress(message)
