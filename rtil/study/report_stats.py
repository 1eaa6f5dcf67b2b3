"""The report's statistics and how it writes them: per cell, each arm's mean with its 95% t interval and the paired
difference treatment - baseline (per pair of generators, and pooled over the pairs), the verdict, number formats."""

from rtil.evaluation.stats import mean_ci, paired_difference
from rtil.study.cells import METRICS
from rtil.study.config import Comparison, Tuning


def shown_kinds(tune: Tuning, comparison: Comparison, method: str) -> list[str]:
    """The settings kinds the report shows for a method: the comparison's, or one for a method without a tuning grid
    (its tuned settings are its common ones: 'common' if evaluated, else the kind its cells were evaluated under)."""
    if tune.tunes(method):
        return comparison.settings
    return ["common"] if "common" in comparison.settings else comparison.settings[:1]


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "helps"
    if high < 0:
        return "hurts"
    return "neutral"


def cell_statistics(rows: list[dict], comparison: Comparison) -> list[dict]:
    """Per (method, settings, task, param) of one comparison: per-pair and pooled statistics from the per-image
    rows (as written to the CSV)."""
    pairs = list(zip(comparison.baseline, comparison.treatment, strict=True))
    keys = sorted({(r["method"], r["settings"], r["task"], r["param"]) for r in rows},
                  key=lambda k: (k[0], k[1], k[2], float(k[3])))
    out = []
    for method, kind, task, param in keys:
        def values(generator, metric, method=method, kind=kind, task=task, param=param):
            sel = [r for r in rows if r["generator"] == generator and r["method"] == method and r["settings"] == kind
                   and r["task"] == task and r["param"] == param]
            return [r["image"] for r in sel], [float(r[metric]) for r in sel]

        entry = {"method": method, "settings": kind, "task": task, "param": param, "pairs": [], "pooled": {}}
        metrics = [m for m in METRICS if all(r.get(m) not in (None, "") for r in rows[:1])]
        pooled = {m: {"baseline": None, "treatment": None} for m in metrics}
        for b, t in pairs:
            pair = {"baseline": b, "treatment": t}
            for m in metrics:
                images_b, vb = values(b, m)
                images_t, vt = values(t, m)
                if images_b != images_t or not vb:
                    raise ValueError(f"{b} and {t} were not evaluated on the same images ({method} {task} {param})")
                pair[m] = {"baseline": mean_ci(vb).as_dict(), "treatment": mean_ci(vt).as_dict(),
                           "difference": paired_difference(vt, vb).as_dict()}
                for arm, v in (("baseline", vb), ("treatment", vt)):
                    acc = pooled[m][arm]
                    pooled[m][arm] = v if acc is None else [a + x for a, x in zip(acc, v, strict=True)]
            entry["pairs"].append(pair)
        for m in metrics:
            vb = [v / len(pairs) for v in pooled[m]["baseline"]]
            vt = [v / len(pairs) for v in pooled[m]["treatment"]]
            entry["pooled"][m] = {"baseline": mean_ci(vb).as_dict(), "treatment": mean_ci(vt).as_dict(),
                                  "difference": paired_difference(vt, vb).as_dict()}
        d = entry["pooled"]["psnr"]["difference"]
        entry["verdict"] = verdict(d["low"], d["high"])
        out.append(entry)
    return out


def fmt_ci(stats: dict) -> str:
    return f"{stats['mean']:.2f} ± {stats['half_width']:.2f}" if stats["n"] > 1 else f"{stats['mean']:.2f}"


def fmt_diff(d: dict, digits: int = 2) -> str:
    if d["n"] < 2:
        return f"{d['mean_difference']:+.{digits}f}"
    return f"{d['mean_difference']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


def fmt_p(p) -> str:
    return "n/a" if p is None or p != p else (f"{p:.3f}" if p >= 0.001 else f"{p:.0e}")


def cell_name(task: str, param) -> str:
    return {"cs": f"CS {float(param):.0%}", "inpaint": f"inpaint {float(param):.0%} observed",
            "sr": f"SR x{int(float(param))}", "denoise": f"denoise sigma {param}"}[task]
