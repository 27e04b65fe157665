"""The end-to-end report's figure: p50 and p99 latency against offered load, one colour per replica count."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for i, config in enumerate(report["configs"]):
        color = colors[i % len(colors)]
        xs = [lv["offered_per_s"] for lv in config["levels"]]
        label = f"{config['replicas']} signer replica{'s' if config['replicas'] > 1 else ''}"
        ax.plot(xs, [lv["p50_ms"] for lv in config["levels"]], "o-", color=color, label=f"{label}: p50")
        ax.plot(xs, [lv["p99_ms"] for lv in config["levels"]], "s--", color=color, label=f"{label}: p99")
        ax.axvline(config["saturation"]["steady_per_s"], color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("offered load (certificate requests / s); dotted: measured saturation")
    ax.set_ylabel("CSR POST → cert.issued (ms)")
    ax.set_yscale("log")
    ax.set_xlim(left=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(
        f"End-to-end latency vs offered load ({report['machine']['nproc']} CPUs, {report['started_at']})", fontsize=10
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
