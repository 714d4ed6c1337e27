"""A picture of the switch: for one flip of each method, the responses per 100 ms by the version
that answered, and the failures, from the command's start. Written as one PNG per bench run under
bench/results/ (matplotlib, imported only here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

BIN_S = 0.1
BEFORE_S = 0.5  # the state before the command starts


def bins(responses: Sequence[Any], started: float, ended: float) -> dict[str, list[int]]:
    """Responses per BIN_S from BEFORE_S before `started` to `ended`: per version, and "failed"."""
    count = int((ended - started + BEFORE_S) / BIN_S) + 1
    series: dict[str, list[int]] = {"failed": [0] * count}
    for response in responses:
        index = int((response.sent - started + BEFORE_S) / BIN_S)
        if not 0 <= index < count:
            continue
        key = "failed" if response.failed else response.version or "?"
        series.setdefault(key, [0] * count)[index] += 1
    return series


def draw(flips: Mapping[str, Mapping[str, Any]], path: str, title: str) -> str:
    """One row per method: the flip's responses per 100 ms by version (stacked), failures in red,
    and a line where the command returned. `flips`: method -> a Flip as a dict with `timeline`."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file
    import matplotlib.pyplot as plt

    methods = [name for name, flip in flips.items() if flip.get("timeline")]
    figure, axes = plt.subplots(len(methods), 1, figsize=(9, 1.9 * len(methods) + 0.8), sharex=True, squeeze=False)
    colours = {"1.0.0": "#1f77b4", "2.0.0": "#2ca02c", "failed": "#d62728"}
    longest = 0.0
    for axis, name in zip(axes[:, 0], methods, strict=True):
        flip = flips[name]
        series = flip["timeline"]
        times = [i * BIN_S - BEFORE_S for i in range(len(series["failed"]))]
        longest = max(longest, times[-1] if times else 0)
        bottom = [0] * len(times)
        for key in sorted(k for k in series if k != "failed") + ["failed"]:
            axis.bar(times, series[key], width=BIN_S, bottom=bottom, align="edge", label=key,
                     color=colours.get(key, "#7f7f7f"))
            bottom = [b + v for b, v in zip(bottom, series[key], strict=True)]
        axis.axvline(0, color="black", linewidth=0.8)
        axis.axvline(flip["command_s"], color="black", linestyle="--", linewidth=0.8)
        axis.axvline(flip["switch_s"], color="#ff7f0e", linewidth=1.2)
        axis.set_title(f"{name}: {flip['kind']} to {flip['version']}, switched {flip['switch_s']:.2f} s, "
                       f"returned {flip['command_s']:.2f} s, {flip['failed']} of {flip['sent']} failed",
                       fontsize=9, loc="left")
        axis.set_ylabel("per 100 ms", fontsize=8)
        axis.tick_params(labelsize=8)
    axes[0, 0].legend(fontsize=8, loc="upper right", ncol=3)
    axes[-1, 0].set_xlabel("seconds from the command's start (solid: start and switch; dashed: command returned)",
                           fontsize=8)
    axes[-1, 0].set_xlim(-BEFORE_S, longest)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
