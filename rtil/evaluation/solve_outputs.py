"""What `invert.py solve` writes: reconstructions, a grid, the measurements and metrics.json."""

from pathlib import Path

import torch

from rtil.atomic_files import atomic_torch_save, json_safe, save_image_atomically, write_json_atomically
from rtil.evaluation.metrics import metric_settings, reconstruction_metrics, to_unit_range
from rtil.evaluation.stats import mean_ci


def summarise(values: list[float]) -> dict:
    return mean_ci(values, confidence=0.95).as_dict()


def write_solve_outputs(out: Path, images, names, results, lpips_metric, lpips_note, args, G, elapsed) -> None:
    """Write reconstructions/<index>.png, grid.png, measurements.pt and metrics.json into `out` for the
    InversionResults `results` of `images` (N, C, H, W) in [-1, 1]; `args` are invert.py solve's arguments."""

    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(results.reconstructions):
        save_image_atomically(to_unit_range(image), out / "reconstructions" / f"{i:05d}.png")
    rows = torch.stack([images, results.measurement_views.clamp(-1, 1), results.reconstructions], dim=1)
    save_image_atomically(to_unit_range(rows.flatten(0, 1)), out / "grid.png", nrow=3, padding=1, pad_value=1.0)

    atomic_torch_save({"measurements": results.measurements, "names": names, "task": args.task,
                       "operators": results.operators, "seed": args.seed}, out / "measurements.pt")
    if results.solution is not None:  # re-render with rtil.inverse.solutions.render_solution(G, solution, cut)
        atomic_torch_save({"solution": results.solution, "cut": results.info.get("cut", 0),
                           "latent_space": results.info.get("latent_space"), "names": names}, out / "solutions.pt")

    values = reconstruction_metrics(results.reconstructions, images, lpips_metric)
    per_image = []
    for i, name in enumerate(names):
        entry = {"index": i, "name": name, "psnr": values["psnr"][i], "ssim": values["ssim"][i],
                 "lpips": values["lpips"][i] if "lpips" in values else "unavailable",
                 "measurement_loss": float(results.measurement_loss[i]),
                 "selected_restart": int(results.selected_restart[i]), "selected_step": int(results.selected_step[i])}
        if results.feasible is not None:
            entry["feasible"] = bool(results.feasible[i])
        if results.round_losses is not None:
            entry["round_measurement_losses"] = results.round_losses[:, i].tolist()
        per_image.append(entry)
    summary = {name: summarise(values[name]) for name in ("psnr", "ssim")}
    summary["lpips"] = summarise(values["lpips"]) if "lpips" in values else "unavailable"
    summary["measurement_loss"] = summarise(results.measurement_loss.tolist())
    settings = metric_settings(lpips_metric)
    if lpips_note:
        settings["lpips"] = {"status": "unavailable", "reason": lpips_note}
    record = {
        "method": args.method, "task": args.task,
        "task_parameters": {"ratio": args.ratio, "factor": args.factor, "sigma": args.sigma},
        "images": args.images, "num_images": len(names), "batch_size": args.batch_size, "seed": args.seed,
        "selection": ("iterate with the lowest measurement loss" if results.solver["select"] == "best"
                      else "last iterate") + " (never by the ground truth)",
        "summary": summary, "per_image": per_image, "metric_settings": settings,
        "operators": results.operators, "solver": results.solver, "solver_info": results.info,
        "generator": {"path": str(args.generator), "family": G.family, "arch": G.config, "rtil": G.rtil,
                      "provenance": G.provenance},
        "elapsed_seconds": elapsed,
    }
    write_json_atomically(out / "metrics.json", json_safe(record))
