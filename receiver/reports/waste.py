"""The waste section: dollars lost to idle and underused GPUs, and what would save them.

A pure function of two range queries over the window: GPU utilization (labels Hostname,
gpu, optionally service) and GPU node cost in $/hour (labels node, optionally
instance_type and gpu_type). A GPU's cost is its share of its node's: node $/h divided by
the GPUs the utilization query reports on that node.

At each sample, a GPU's wasted $/h is
- idle: its whole share while utilization is 0 %;
- low utilization: the unused part, share x (1 - utilization / 100), while utilization is
  above 0 % and under LOW_UTILIZATION;
integrated over the window like spend. Rows are ranked by service and by node.

Recommendations, one per node, the first rule that applies (means are over the window):
1. scale down: every GPU of the node has a mean of 0 %. Saves the node's cost.
2. time-slicing: two or more GPUs of the node are under LOW_UTILIZATION. Their work fits on
   ceil(sum of their means / TIME_SLICING_TARGET) GPUs shared by time-slicing (at least
   one); the others can go. Saves the freed GPUs' share.
3. smaller GPU type: the node's mean is under LOW_UTILIZATION and another GPU type in the
   cluster costs less per GPU. Saves the price difference per GPU for the node's GPUs.
4. spot: the node's mean is under LOW_UTILIZATION and nothing above applies. Its work is
   light enough to restart after an interruption; saves SPOT_DISCOUNT of the node's cost.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from receiver.context.incident import integrate
from receiver.context.prometheus import Series
from receiver.reports.fetch import Window
from receiver.reports.model import GpuWaste, Recommendation, Waste

LOW_UTILIZATION = 30.0  # %: the seed's LowGPUUtilization threshold
TIME_SLICING_TARGET = 80.0  # %: how busy a shared GPU may be made, leaving headroom
# An estimate, not a quote: spot capacity is typically 60-90 % below on-demand (AWS, GCP);
# the report takes the low end.
SPOT_DISCOUNT = 0.6
NO_SERVICE = "(no service)"


@dataclass(frozen=True, slots=True)
class _Gpu:
    node: str
    gpu: str
    service: str | None
    mean: float
    idle: float
    low: float
    share: float  # $ of the node's cost this GPU carries over the window


def waste_section(utilization: Window, cost: Window, top: int) -> Waste:
    """The waste section from the window's utilization and node-cost series."""
    nodes = {s.labels["node"]: s for s in cost.series if "node" in s.labels}
    per_node: dict[str, list[Series]] = defaultdict(list)
    for series in utilization.series:
        if "Hostname" in series.labels and series.labels["Hostname"] in nodes:
            per_node[series.labels["Hostname"]].append(series)
    gpus: list[_Gpu] = []
    node_cost: dict[str, float] = {}
    for node, members in per_node.items():
        node_cost[node] = cost.integral(nodes[node])
        rate = dict(nodes[node].points)
        for series in members:
            gpus.append(_gpu(series, rate, len(members), utilization))
    by_service: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    for one in gpus:
        by_service[one.service or NO_SERVICE] += one.idle + one.low
        by_node[one.node] += one.idle + one.low
    hours = (utilization.end - utilization.start) / 3600
    recommendations: list[Recommendation] = []
    for node in sorted(per_node):
        on_node = [g for g in gpus if g.node == node]
        found = _recommend(node, on_node, node_cost, nodes, gpus, hours)
        if found is not None:
            recommendations.append(found)
    recommendations.sort(key=lambda r: -r.saves)
    return Waste(
        idle_total=sum(g.idle for g in gpus),
        low_total=sum(g.low for g in gpus),
        by_service=_ranked(by_service, top),
        by_node=_ranked(by_node, top),
        gpus=tuple(
            GpuWaste(g.node, g.gpu, g.service, g.mean, g.idle, g.low)
            for g in sorted(gpus, key=lambda g: -(g.idle + g.low))[:top]
        ),
        recommendations=tuple(recommendations[:top]),
    )


def _gpu(series: Series, rate: Mapping[float, float], count: int, window: Window) -> _Gpu:
    idle: list[tuple[float, float]] = []
    low: list[tuple[float, float]] = []
    share: list[tuple[float, float]] = []
    utils: list[float] = []
    for t, util in series.points:
        cost = rate.get(t)
        if cost is None or not math.isfinite(cost) or not math.isfinite(util):
            continue
        part = cost / count
        utils.append(util)
        share.append((t, part))
        idle.append((t, part if util <= 0 else 0.0))
        low.append((t, part * (1 - util / 100) if 0 < util < LOW_UTILIZATION else 0.0))

    def total(points: list[tuple[float, float]]) -> float:
        return integrate(points, window.start, window.end, window.step) or 0.0

    return _Gpu(
        node=series.labels["Hostname"],
        gpu=series.labels.get("gpu", ""),
        service=series.labels.get("service") or None,
        mean=sum(utils) / len(utils) if utils else math.nan,
        idle=total(idle),
        low=total(low),
        share=total(share),
    )


def _recommend(
    node: str,
    members: list[_Gpu],
    node_cost: Mapping[str, float],
    nodes: Mapping[str, Series],
    everyone: list[_Gpu],
    hours: float,
) -> Recommendation | None:
    measured = [g for g in members if math.isfinite(g.mean)]
    if not measured:
        return None
    if all(g.mean <= 0 for g in measured):
        return Recommendation(
            "scale_down",
            node,
            f"scale down {node}: its {len(measured)} GPU(s) were idle the whole window",
            node_cost[node],
        )
    under = [g for g in measured if g.mean < LOW_UTILIZATION]
    if len(under) >= 2:
        needed = max(1, math.ceil(sum(g.mean for g in under) / TIME_SLICING_TARGET))
        freed = sorted(under, key=lambda g: g.share)[: len(under) - needed]
        if freed:
            return Recommendation(
                "time_slicing",
                node,
                f"time-slicing on {node}: {len(under)} GPUs under {LOW_UTILIZATION:g} % fit "
                f"on {needed}, freeing {len(freed)}",
                sum(g.share for g in freed),
            )
    mean = sum(g.mean for g in measured) / len(measured)
    if mean >= LOW_UTILIZATION:
        return None
    per_gpu = _per_gpu_rates(nodes, everyone)
    own = per_gpu.get(node)
    gpu_type = nodes[node].labels.get("gpu_type")
    cheaper = [
        (rate, other)
        for other, rate in per_gpu.items()
        if own is not None and rate < own and nodes[other].labels.get("gpu_type") != gpu_type
    ]
    if own is not None and cheaper and hours > 0:
        rate, other = min(cheaper)
        target = nodes[other].labels.get("gpu_type") or other
        return Recommendation(
            "smaller_gpu",
            node,
            f"a smaller GPU type for {node} (mean {mean:.0f} %): {target} costs "
            f"${rate:,.2f}/h per GPU against ${own:,.2f}/h",
            (own - rate) * len(members) * hours,
        )
    return Recommendation(
        "spot",
        node,
        f"spot capacity for {node} (mean {mean:.0f} %): light work that can restart",
        SPOT_DISCOUNT * node_cost[node],
    )


def _per_gpu_rates(nodes: Mapping[str, Series], gpus: list[_Gpu]) -> dict[str, float]:
    """Each node's mean $/h per GPU over the window."""
    counts: dict[str, int] = defaultdict(int)
    for g in gpus:
        counts[g.node] += 1
    rates: dict[str, float] = {}
    for node, count in counts.items():
        values = [v for _, v in nodes[node].points if math.isfinite(v)]
        if values:
            rates[node] = sum(values) / len(values) / count
    return rates


def _ranked(totals: Mapping[str, float], top: int) -> tuple[tuple[str, float], ...]:
    ranked = sorted(((k, v) for k, v in totals.items() if v > 0), key=lambda kv: -kv[1])
    return tuple(ranked[:top])
