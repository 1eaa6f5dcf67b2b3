"""Make `tiny-16px-gd.pkl` and `expected_init_from.pt` for tests/test_init_from.py with NVlabs' own code.

A network snapshot whose G and D share one channel table (as rtil's StyleGAN2Module builds them), G_ema
different from G, and non-zero biases everywhere, so that `train.py fit --init_from` can be checked for G, G_ema
and D against the outputs of NVlabs' networks. Run outside the rtil tree, with a checkout of
NVlabs/stylegan2-ada-pytorch (see README.md):
    OMP_NUM_THREADS=1 python make_init_from_pickle.py /path/to/stylegan2-ada-pytorch OUT_DIR
Not imported by the tests; nothing of NVlabs' code is copied here, only called.
"""

import copy
import pickle
import sys

import torch

sys.path.insert(0, sys.argv[1])
import dnnlib  # noqa: E402
import legacy  # noqa: E402
from make_pickles import pickle_without_module_source  # noqa: E402 - beside this script; same arguments

ARCH = dict(c_dim=0, img_resolution=16, img_channels=1)


def randomise_(module, seed: int) -> None:
    """Non-zero biases and noise strengths, and weights moved away from their initial values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in module.named_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))


def main(out_dir: str) -> None:
    torch.manual_seed(4)
    G = dnnlib.util.construct_class_by_name(
        class_name="training.networks.Generator", z_dim=8, w_dim=16, mapping_kwargs=dnnlib.EasyDict(num_layers=2),
        synthesis_kwargs=dnnlib.EasyDict(channel_base=256, channel_max=16, num_fp16_res=0, conv_clamp=None,
                                         architecture="skip"), **ARCH).eval().requires_grad_(False)
    D = dnnlib.util.construct_class_by_name(
        class_name="training.networks.Discriminator", channel_base=256, channel_max=16, architecture="resnet",
        block_kwargs=dnnlib.EasyDict(), mapping_kwargs=dnnlib.EasyDict(),
        epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=2), **ARCH).eval().requires_grad_(False)
    randomise_(G, 5)
    randomise_(D, 6)
    G_ema = copy.deepcopy(G)
    randomise_(G_ema, 7)  # an EMA copy that differs from G, so that a test can tell the two apart
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(16, generator=torch.Generator().manual_seed(8)))
        G_ema.mapping.w_avg.copy_(torch.randn(16, generator=torch.Generator().manual_seed(9)))
    augment_pipe = dnnlib.util.construct_class_by_name(class_name="training.augment.AugmentPipe", xflip=1, rotate90=1)
    snapshot = dict(training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="tiny.zip",
                                             use_labels=False, max_size=None, xflip=False, resolution=16))
    for name, module in [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", augment_pipe)]:
        snapshot[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    genuine = f"{out_dir}/tiny-16px-gd-genuine.pkl"
    with open(genuine, "wb") as f:
        pickle.dump(snapshot, f)
    with open(genuine, "rb") as f:  # the networks as NVlabs' loader reads them
        loaded = legacy.load_network_pkl(f)
    z = torch.randn([4, 8], generator=torch.Generator().manual_seed(123))
    reals = torch.randn([4, 1, 16, 16], generator=torch.Generator().manual_seed(124)).clamp(-1, 1)
    c = torch.zeros([4, 0])
    with torch.no_grad():
        expected = dict(z=z, reals=reals,
                        g_ema_images=loaded["G_ema"](z, c, truncation_psi=1, noise_mode="const"),
                        g_images=loaded["G"](z, c, truncation_psi=1, noise_mode="const"),
                        d_logits=loaded["D"](reals, c))
    data = pickle_without_module_source(snapshot)
    with open(f"{out_dir}/tiny-16px-gd.pkl", "wb") as f:
        f.write(data)
    torch.save(expected, f"{out_dir}/expected_init_from.pt")
    print(f"tiny-16px-gd.pkl: {len(data)} bytes; D logits {expected['d_logits'].flatten().tolist()}")


if __name__ == "__main__":
    main(sys.argv[2])
