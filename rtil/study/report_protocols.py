"""The report's named solver protocols: for each comparison with `protocols`, a section per protocol saying which
settings each arm used and where they come from, and a table per cell of each arm's mean PSNR and treatment -
baseline under the protocol, beside the same difference at each generator's tuned settings."""

from rtil.study.config import StudyConfig
from rtil.study.protocols import protocol_kind
from rtil.study.report_stats import cell_name, fmt_diff


def protocol_sections(cfg: StudyConfig, everything: dict) -> list[str]:
    """The sections' markdown lines (none without protocols); `everything`: comparison -> its cell statistics."""
    lines = []
    for cname, c in cfg.comparisons.items():
        for name, protocol in (c.protocols or {}).items():
            method, (label_b, label_t) = protocol["method"], c.labels
            source = f" Source: {protocol['source']}." if protocol["source"] else ""
            lines += [f"### {c.title}: {name} protocol", "",
                      f"{method} with its common settings changed for {label_b} by {_changes(protocol['baseline'])} "
                      f"and for {label_t} by {_changes(protocol['treatment'])}.{source} Δ is {label_t} - {label_b}, "
                      f"paired over images and pooled over {len(c.baseline)} pair(s); the last column is the same "
                      f"difference at each generator's tuned settings.", "",
                      f"| cell | {label_b} PSNR | {label_t} PSNR | Δ PSNR [95% CI] | verdict | "
                      f"Δ PSNR tuned [95% CI] |", "|---|---|---|---|---|---|"]
            for task, params in protocol["tasks"].items():
                for param in params:
                    entry = _entry(everything[cname], method, protocol_kind(name), task, param)
                    tuned = _entry(everything[cname], method, "tuned", task, param)
                    p = entry["pooled"]["psnr"]
                    at_tuned = fmt_diff(tuned["pooled"]["psnr"]["difference"]) if tuned else "not evaluated"
                    lines.append(f"| {cell_name(task, param)} | {p['baseline']['mean']:.2f} | "
                                 f"{p['treatment']['mean']:.2f} | {fmt_diff(p['difference'])} | {entry['verdict']} | "
                                 f"{at_tuned} |")
            lines.append("")
    return ["## Other solver protocols", ""] + lines if lines else []


def _changes(change: dict) -> str:
    """An arm's changes as `{key: value, ...}` (or 'nothing')."""
    if not change:
        return "nothing"
    return "`{" + ", ".join(f"{key}: {value}" for key, value in change.items()) + "}`"


def _entry(stats: list[dict], method: str, kind: str, task: str, param) -> dict | None:
    """The statistics of one cell of a comparison (None when it was not evaluated)."""
    return next((s for s in stats if s["method"] == method and s["settings"] == kind and s["task"] == task
                 and float(s["param"]) == float(param)), None)
