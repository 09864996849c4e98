"""Figures: one JSON line per measured number, printed and appended to the run's file.

Every figure carries its section, the 1-minute load average when the section started and when
the figure was taken (two other people share this machine's cores), and the command that
reproduces it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def load_average() -> float:
    """The 1-minute load average of the host."""
    return round(os.getloadavg()[0], 2)


@dataclass
class Recorder:
    """Collects the figures of one run and writes each as a JSON line."""

    path: Path
    quick: bool
    figures: list[dict[str, Any]] = field(default_factory=list)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)
    _section: str = ""

    def begin(self, section: str, command: str) -> None:
        self._section = section
        self.sections[section] = {
            "load_before": load_average(), "started": time.time(), "command": command
        }
        logger.info("section %s started (load %.2f)", section, load_average())

    def end(self, section: str, error: str | None = None) -> None:
        info = self.sections[section]
        info.update(load_after=load_average(), seconds=round(time.time() - info["started"], 1))
        if error:
            info["error"] = error
        self._emit({"kind": "section", "section": section, **info})

    def add(
        self,
        name: str,
        value: float | int | str | None,
        unit: str,
        *,
        model: str | None = None,
        goal: str | None = None,
        met: bool | None = None,
        **detail: Any,
    ) -> dict[str, Any]:
        """Record one figure of the current section and print it as a JSON line."""
        figure = {
            "kind": "figure",
            "section": self._section,
            "name": name,
            "model": model,
            "value": round(value, 4) if isinstance(value, float) else value,
            "unit": unit,
            "goal": goal,
            "met": met,
            "load_before": self.sections[self._section]["load_before"],
            "load_now": load_average(),
            "quick": self.quick,
            "command": self.sections[self._section]["command"],
            "time": round(time.time(), 1),
            **detail,
        }
        self.figures.append(figure)
        self._emit(figure)
        return figure

    def find(self, section: str, name: str, model: str | None = None) -> dict[str, Any] | None:
        for figure in self.figures:
            if figure["section"] == section and figure["name"] == name:
                if model is None or figure["model"] == model:
                    return figure
        return None

    def _emit(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, default=str)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(line + "\n")
