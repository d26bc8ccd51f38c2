"""What several benchmark scripts share. They import it as ``_common``: a script's own folder is
first on ``sys.path`` when it runs as ``python benchmarks/<name>.py``."""

from typing import Dict, List


def scaling(summary: List[Dict]) -> List[Dict]:
    """Per engine, from the smallest to the largest size: the growth of time and of peak memory.

    ``summary`` rows carry ``engine``, ``rows``, ``seconds`` and ``peak_rss_mb``.
    """
    out = []
    for engine in dict.fromkeys(s["engine"] for s in summary):
        rows = sorted((s for s in summary if s["engine"] == engine), key=lambda s: s["rows"])
        if len(rows) > 1:
            small, big = rows[0], rows[-1]
            out.append({"engine": engine, "rows": [small["rows"], big["rows"]],
                        "rows_ratio": round(big["rows"] / small["rows"], 1),
                        "time_ratio": round(big["seconds"] / small["seconds"], 2),
                        "peak_rss_mb": [small["peak_rss_mb"], big["peak_rss_mb"]],
                        "memory_ratio": round(big["peak_rss_mb"] / small["peak_rss_mb"], 2)})
    return out
