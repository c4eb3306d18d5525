"""What a report holds: one dataclass per section and the `Report` that carries them.

Money is in $, rates in $/hour, times are UTC datetimes; rendering decides how they look.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ServiceSpend:
    service: str
    window: float  # $ over the report's window
    month: float  # $ since the start of the month (UTC)


@dataclass(frozen=True, slots=True)
class Spend:
    rows: tuple[ServiceSpend, ...]  # the top services by window spend
    window_total: float  # every service, not only the rows
    month_total: float


@dataclass(frozen=True, slots=True)
class GpuWaste:
    node: str
    gpu: str
    service: str | None
    utilization: float  # mean % over the window
    idle: float  # $ while at 0 %
    low: float  # $ of the unused share while under the low-utilization line


@dataclass(frozen=True, slots=True)
class Recommendation:
    kind: str  # scale_down, time_slicing, smaller_gpu, spot
    node: str
    text: str
    saves: float  # $ over a window like this one


@dataclass(frozen=True, slots=True)
class Waste:
    idle_total: float
    low_total: float
    by_service: tuple[tuple[str, float], ...]  # ranked, $ idle + low
    by_node: tuple[tuple[str, float], ...]
    gpus: tuple[GpuWaste, ...]
    recommendations: tuple[Recommendation, ...]


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    service: str
    used_percent: float | None
    projected: float | None  # month-end $
    budget: float | None  # monthly $
    runs_out: datetime | None

    @property
    def over(self) -> bool:
        return (
            self.projected is not None
            and self.budget is not None
            and (self.projected > self.budget)
        )


@dataclass(frozen=True, slots=True)
class Change:
    service: str
    now: float  # $/h at the report's time
    average: float  # $/h averaged over the 7 days before it

    @property
    def delta(self) -> float:
        return self.now - self.average

    @property
    def percent(self) -> float | None:
        return self.delta / self.average * 100 if self.average else None


@dataclass(frozen=True, slots=True)
class Changes:
    rises: tuple[Change, ...]
    falls: tuple[Change, ...]


@dataclass(frozen=True, slots=True)
class Incident:
    """A cost alert's episode in the report's window, as the history records it."""

    alertname: str
    service: str | None
    starts_at: datetime
    ends_at: datetime | None  # None: still firing
    cost: float | None  # $ the episode cost, when known


@dataclass(frozen=True, slots=True)
class Line:
    """A chart line: a service's $/h over the window."""

    service: str
    points: tuple[tuple[float, float], ...]
    budget_rate: float | None  # $/h that spends exactly the monthly budget


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    start: datetime
    end: datetime
    timezone: str
    late: bool
    sections: tuple[str, ...]
    spend: Spend | None = None
    waste: Waste | None = None
    budgets: tuple[BudgetStatus, ...] | None = None
    changes: Changes | None = None
    incidents: tuple[Incident, ...] | None = None
    lines: tuple[Line, ...] = ()
    # A section that could not be computed, and why (shown in its place).
    unavailable: tuple[tuple[str, str], ...] = ()
    graph_url: str | None = None
