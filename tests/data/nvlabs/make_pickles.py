"""Make the tiny NVlabs StyleGAN2-ADA snapshots and expected images with NVlabs' own code (see README.md).

Run outside the rtil tree, with a checkout of NVlabs/stylegan2-ada-pytorch:
    OMP_NUM_THREADS=1 python make_pickles.py /path/to/stylegan2-ada-pytorch OUT_DIR
Not imported by the tests; nothing of NVlabs' code is copied here, only called.
"""

import copy
import pickle
import sys

import torch

sys.path.insert(0, sys.argv[1])
import dnnlib  # noqa: E402
import legacy  # noqa: E402
from torch_utils import persistence  # noqa: E402

PLACEHOLDER = "# module source removed: rtil never reads it"
SPECS = [dict(res=16, img_channels=1, seed=1), dict(res=32, img_channels=3, seed=2),
         dict(res=16, img_channels=1, seed=3, conv_clamp=0.5)]  # clamping that changes the images


def pickle_without_module_source(snapshot: dict) -> bytes:
    """The snapshot pickled with the embedded module source blanked (persistent classes pickle their
    `_orig_module_src`); the classes get their source back afterwards."""
    classes = {type(m) for v in snapshot.values() if isinstance(v, torch.nn.Module) for m in v.modules()}
    saved = {cls: cls._orig_module_src for cls in classes if persistence.is_persistent(cls)}
    for cls in saved:
        cls._orig_module_src = PLACEHOLDER
    data = pickle.dumps(snapshot)
    for cls, src in saved.items():
        cls._orig_module_src = src
    assert b"persistent_class" not in data and b"NVIDIA" not in data and b"def forward" not in data
    return data


def networks(res: int, img_channels: int, conv_clamp: float | None = None):
    common = dict(c_dim=0, img_resolution=res, img_channels=img_channels)
    G_kwargs = dnnlib.EasyDict(class_name="training.networks.Generator", z_dim=8, w_dim=16,
                               mapping_kwargs=dnnlib.EasyDict(num_layers=2),
                               synthesis_kwargs=dnnlib.EasyDict(channel_base=256, channel_max=16, num_fp16_res=0,
                                                                conv_clamp=conv_clamp, architecture="skip"))
    D_kwargs = dnnlib.EasyDict(class_name="training.networks.Discriminator", channel_base=128, channel_max=8,
                               block_kwargs=dnnlib.EasyDict(), mapping_kwargs=dnnlib.EasyDict(),
                               epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=2))
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common).train().requires_grad_(False)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common).train().requires_grad_(False)
    with torch.no_grad():  # non-trivial biases, noise strengths and w_avg (they are 0 at initialisation)
        for name, p in G.named_parameters():
            if name.endswith(("bias", "noise_strength")):
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "affine" in name else 0.0))
        G.mapping.w_avg.copy_(torch.randn_like(G.mapping.w_avg))
    return G, D


def main(out_dir: str) -> None:
    expected = {}
    for spec in SPECS:
        torch.manual_seed(spec["seed"])
        res = spec["res"]
        G, D = networks(res, spec["img_channels"], spec.get("conv_clamp"))
        label = f"{res}px" + ("-clamp" if spec.get("conv_clamp") else "")
        G_ema = copy.deepcopy(G).eval()
        augment_pipe = dnnlib.util.construct_class_by_name(class_name="training.augment.AugmentPipe", xflip=1,
                                                           rotate90=1)
        training_set_kwargs = dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path="tiny.zip",
                                              use_labels=False, max_size=None, xflip=False, resolution=res)
        snapshot_data = dict(training_set_kwargs=dict(training_set_kwargs))  # as training/training_loop.py does
        for name, module in [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", augment_pipe)]:
            snapshot_data[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
        genuine = f"{out_dir}/network-snapshot-{label}-genuine.pkl"
        with open(genuine, "wb") as f:
            pickle.dump(snapshot_data, f)
        with open(genuine, "rb") as f:  # the images of the pickle as NVlabs' loader reads it
            G_loaded = legacy.load_network_pkl(f)["G_ema"]
        z = torch.randn([4, 8], generator=torch.Generator().manual_seed(123))
        c = torch.zeros([4, 0])
        with torch.no_grad():
            images = G_loaded(z, c, truncation_psi=1, noise_mode="const")
            images_psi05 = G_loaded(z, c, truncation_psi=0.5, noise_mode="const")
            assert torch.equal(images, G_ema(z, c, truncation_psi=1, noise_mode="const"))
        expected[label] = dict(z=z, images=images, images_psi05=images_psi05)
        data = pickle_without_module_source(snapshot_data)
        with open(f"{out_dir}/tiny-{label}.pkl", "wb") as f:
            f.write(data)
        print(f"{label}: {len(data)} bytes")
    torch.save(expected, f"{out_dir}/expected_images.pt")


if __name__ == "__main__":
    main(sys.argv[2])
