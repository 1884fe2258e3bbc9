"""Draw each dashboard as a PNG with matplotlib, from the same queries against the same Prometheus
(Grafana's server is not used). For docs/images/ after a demo run:

    python deploy/monitoring/render.py --prometheus http://127.0.0.1:PORT --out docs/images [--minutes 10]

One figure per dashboard, one subplot per panel: time series for range panels, horizontal bars for
instant ones; legends as Grafana fills them ({{label}} from each series).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import panels as dashboards

SCRAPE_INTERVAL_S = 2.0
_LEGEND = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_UNITS = {"percent": "%", "percentunit": "ratio", "s": "seconds", "ops": "per second", "reqps": "requests/s",
          "decmbytes": "MiB", "watt": "W", "celsius": "°C", "short": "", "currencyUSD": "USD"}


def _get(url: str, path: str, params: dict[str, str]) -> list[dict]:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=30) as response:
        body = json.loads(response.read())
    if body.get("status") != "success":
        raise RuntimeError(f"{path} {params}: {body}")
    return body["data"]["result"]


def legend(template: str, labels: dict[str, str]) -> str:
    return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), template).strip() or "value"


def render(url: str, out: Path, minutes: float = 10.0, prefix: str = "dashboard-", dpi: int = 80,
           only: tuple[str, ...] = ()) -> list[Path]:
    """One PNG per dashboard (``only``: these file stems), drawn from ``url``'s Prometheus."""
    import matplotlib

    matplotlib.use("Agg")
    from datetime import datetime

    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    end = time.time()
    start = end - minutes * 60
    step = max(SCRAPE_INTERVAL_S, (end - start) / 240)
    rate = dashboards.rate_interval(SCRAPE_INTERVAL_S, step)
    boards = dashboards.load()
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for stem, board in boards.items():
        if only and stem not in only:
            continue
        variables = dashboards.all_values(board)
        by_panel: dict[str, list[dashboards.PanelQuery]] = {}
        for query in dashboards.queries({stem: board}):
            by_panel.setdefault(query.panel, []).append(query)
        cols = 3
        rows = math.ceil(len(by_panel) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
        for ax, (title, queries) in zip(axes.flat, by_panel.items(), strict=False):
            unit = _UNITS.get(queries[0].unit, queries[0].unit)
            if queries[0].instant:
                names, values = [], []
                for query in queries:
                    for series in _get(url, "/api/v1/query", {"query": query.resolved(variables, rate),
                                                             "time": f"{end:.3f}"}):
                        names.append(legend(query.legend, series["metric"]))
                        values.append(float(series["value"][1]))
                ax.barh(names, values, color="#3274d9")
                ax.set_xlabel(unit)
            else:
                for query in queries:
                    for series in _get(url, "/api/v1/query_range", {
                            "query": query.resolved(variables, rate), "start": f"{start:.3f}", "end": f"{end:.3f}",
                            "step": f"{step:g}"}):
                        xs = [datetime.fromtimestamp(float(t)) for t, _ in series["values"]]
                        ys = [float(v) for _, v in series["values"]]
                        ax.plot(xs, ys, linewidth=1, label=legend(query.legend, series["metric"]))
                ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
                ax.set_ylabel(unit)
                handles, labels = ax.get_legend_handles_labels()
                if handles:
                    ax.legend(handles[:8], labels[:8], fontsize=6, loc="upper left",
                              title=f"+{len(handles) - 8} more" if len(handles) > 8 else None, title_fontsize=6)
            ax.set_title(title, fontsize=10)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(by_panel):]:
            ax.axis("off")
        fig.suptitle(f"{board['title']}  (last {minutes:g} min, all variables at All)", fontsize=13)
        fig.tight_layout()
        path = out / f"{prefix}{stem.removeprefix('gpufleet-')}.png"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="Prometheus URL (gpufleet cluster status shows it)")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--minutes", type=float, default=10.0, help="time range drawn (default 10)")
    parser.add_argument("--only", action="append", default=[], metavar="STEM",
                        help="only this dashboard (e.g. gpufleet-fleet); repeatable")
    args = parser.parse_args(argv)
    for path in render(args.prometheus.rstrip("/"), args.out, args.minutes, only=tuple(args.only)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
