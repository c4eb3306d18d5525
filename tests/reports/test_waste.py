"""The waste rules on their own: which recommendation a node gets, and what it saves."""

from __future__ import annotations

import pytest

from receiver.context.prometheus import Series
from receiver.reports.fetch import Window
from receiver.reports.waste import SPOT_DISCOUNT, waste_section

START, END, STEP = 0.0, 10 * 3600.0, 600.0  # a 10-hour window
TIMES = [START + i * STEP for i in range(61)]


def window(*series: Series) -> Window:
    return Window(series, START, END, STEP)


def util(node: str, gpu: str, value: float) -> Series:
    return Series({"Hostname": node, "gpu": gpu}, tuple((t, value) for t in TIMES))


def cost(node: str, gpu_type: str, value: float) -> Series:
    return Series({"node": node, "gpu_type": gpu_type}, tuple((t, value) for t in TIMES))


# (utilization per GPU of node "n", the cheapest other node, recommendation, $ saved)
CASES = [
    # Both GPUs idle all window: scale the node down, saving its whole cost: $10/h x 10 h.
    ([0, 0], None, "scale_down", 100.0),
    # Two GPUs at 20 % and 25 % fit on one (45 % <= 80 %): one freed, $5/h x 10 h.
    ([20, 25], None, "time_slicing", 50.0),
    # One GPU at 10 %, one at 40 % (mean 25 %), a cheaper type elsewhere at $2/h per GPU:
    # ($5 - $2) x 2 GPUs x 10 h.
    ([10, 40], ("m", "T4", 2.0), "smaller_gpu", 60.0),
    # The same without a cheaper type: spot, SPOT_DISCOUNT of $10/h x 10 h.
    ([10, 40], None, "spot", SPOT_DISCOUNT * 100.0),
    # Busy enough: nothing to recommend.
    ([50, 40], None, None, 0.0),
]


@pytest.mark.parametrize(("utils", "other", "kind", "saves"), CASES)
def test_recommendations(
    utils: list[float], other: tuple[str, str, float] | None, kind: str | None, saves: float
) -> None:
    series = [util("n", str(i), u) for i, u in enumerate(utils)]
    costs = [cost("n", "A100", 10.0)]
    if other is not None:
        name, gpu_type, per_gpu = other
        series.append(util(name, "0", 90.0))
        costs.append(cost(name, gpu_type, per_gpu))
    waste = waste_section(window(*series), window(*costs), top=10)
    found = [r for r in waste.recommendations if r.node == "n"]
    if kind is None:
        assert found == []
    else:
        assert [r.kind for r in found] == [kind]
        assert found[0].saves == pytest.approx(saves)


def test_idle_and_low_dollars() -> None:
    # $10/h over 2 GPUs = $5/h each for 10 h: one idle ($50), one at 20 % (80 % of $50).
    waste = waste_section(
        window(util("n", "0", 0), util("n", "1", 20)), window(cost("n", "A100", 10.0)), top=10
    )
    assert waste.idle_total == pytest.approx(50.0)
    assert waste.low_total == pytest.approx(40.0)
    assert [g.gpu for g in waste.gpus] == ["0", "1"]


def test_a_gpu_on_a_node_without_cost_is_left_out() -> None:
    waste = waste_section(window(util("x", "0", 0)), window(cost("n", "A100", 10.0)), top=10)
    assert waste.gpus == () and waste.idle_total == 0
