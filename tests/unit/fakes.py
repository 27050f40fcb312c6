"""Fakes shared by unit tests of the stages that seek their consumer."""

from __future__ import annotations

__all__ = ["PositionedConsumer"]


class PositionedConsumer:
    """A consumer standing at `position` in every partition; a seek moves it there and is
    recorded in `seeks`. `asked` counts the positions asked for."""

    def __init__(self, position: int) -> None:
        self.at = position
        self.asked = 0
        self.seeks: list[tuple[object, int]] = []

    async def position(self, tp: object) -> int:
        self.asked += 1
        return self.at

    async def seek(self, tp: object, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.at = offset
