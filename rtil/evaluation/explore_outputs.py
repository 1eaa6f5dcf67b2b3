"""What `invert.py explore` writes: the e-GLASS solutions as a grid, the uncertainty map, the direction
correlation plot (the paper's Fig. 1) and explore.json with every number and setting."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from rtil.atomic_files import atomic_torch_save, json_safe, save_figure_atomically, write_json_atomically  # noqa: E402
from rtil.evaluation.plots import save_comparison_grid  # noqa: E402


def write_explore_outputs(out: Path, truths: torch.Tensor, views: torch.Tensor, names: list[str], exploration,
                          record: dict) -> None:
    """grid.png: truth | measurement | G(z0) | every solution (feasible ones; an infeasible slot shows
    G(z0) greyed out) | per-pixel std; correlations.png; explore.json."""
    out.mkdir(parents=True, exist_ok=True)
    e = exploration
    b, s = e.solutions.shape[:2]
    uncertainty = e.uncertainty()
    spread = uncertainty / uncertainty.flatten(1).amax(1).clamp(min=1e-8)[:, None, None, None] * 2 - 1
    columns = [truths, views, e.initial]
    labels = ["truth", "measurement", "G(z0)"]
    for j in range(s):
        shown = torch.where(e.keep[:, j, None, None, None], e.solutions[:, j], e.initial * 0.3 - 0.7)
        columns.append(shown)
        etas = e.settings.get("etas", 1)
        fraction = f" {j % etas + 1}/{etas}" if etas > 1 else ""  # which fraction of the largest feasible step
        labels.append(f"{'+' if j < s // 2 else '-'}d(v{e.starts[j]}){fraction}")
    columns.append(spread)
    labels.append("std (scaled)")
    save_comparison_grid(columns, out / "grid.png", labels=labels)

    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=150)
    j = torch.arange(1, e.correlations["start_vs_measurement"].shape[1] + 1)
    axes[0].plot(j.numpy(), e.correlations["start_vs_measurement"][0].numpy(), "o-", ms=3,
                 label=f"v{e.starts[0]} (start)")
    axes[0].plot(j.numpy(), e.correlations["direction_vs_measurement"][0].numpy(), "s-", ms=3, label="d (e-GLASS)")
    axes[0].set_xlabel("j (top eigenvectors u_j of H_Y)")
    axes[0].set_ylabel("|<., u_j>|")
    axes[0].legend(fontsize=7)
    k = torch.arange(1, e.correlations["direction_vs_image"].shape[1] + 1)
    axes[1].plot(k.numpy(), e.correlations["direction_vs_image"][0].numpy(), "s-", ms=3, color="C1",
                 label="d (e-GLASS)")
    axes[1].set_xlabel("k (top eigenvectors v_k of H_X)")
    axes[1].set_ylabel("|<d, v_k>|")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"image {names[0]}: the direction keeps clear of the measurement-changing eigenvectors",
                 fontsize=8)
    fig.tight_layout()
    save_figure_atomically(fig, out / "correlations.png")
    plt.close(fig)

    per_image = []
    for i, name in enumerate(names):
        per_image.append({
            "name": name, "initial_error": float(e.initial_error[i]),
            "solutions": [{"start_k": e.starts[j], "sign": "+" if j < s // 2 else "-", "step": float(e.steps[i, j]),
                           "normalised_measurement_error": float(e.errors[i, j]), "feasible": bool(e.feasible[i, j]),
                           "perceptual_change": float(e.perceptual_change[i, j]),
                           "removed_measurement_eigenvectors": int(e.removed[j][i])} for j in range(s)],
            "eigenvalues_measurement": e.eigenvalues_measurement[i].tolist(),
            "eigenvalues_image": e.eigenvalues_image[i].tolist(),
            "correlations": {k: v[i].tolist() for k, v in e.correlations.items()},
            "mean_uncertainty": float(uncertainty[i].mean()),
        })
    summary = {"feasible_solutions": int(e.feasible.sum()), "solutions": int(e.feasible.numel()),
               "perceptual_metric": e.perceptual, "eigensolver": e.eigensolver, "seconds": e.seconds}
    write_json_atomically(out / "explore.json", json_safe({**record, "summary": summary, "settings": e.settings,
                                                           "per_image": per_image}))
    atomic_torch_save({"latents": e.latents, "directions": e.directions, "steps": e.steps, "names": names},
                      out / "solutions.pt")
