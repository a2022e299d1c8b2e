"""IResNet: parity with a PyTorch module in insightface's state-dict layout, conversion errors, configs, and the
image-encoder registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.torch import save_file
from torch import nn

from swapjax.errors import ConfigError
from swapjax.errors import CheckpointError
from swapjax.convert.iresnet import convert_iresnet, iresnet_config_from_shapes
from swapjax.models.image_encoder import (IMAGE_ENCODERS, SmallEncoderConfig, SmallImageEncoder,
                                          build_image_encoder, encode_images)
from swapjax.models.iresnet import IResNet, IResNetConfig, abstract_iresnet, iresnet_config
from helpers import rel_err

LAYERS, WIDTH, FEATURES = (2, 1, 3, 1), 8, 16  # every stage starts with a downsampling block; 3 exercises the scan


# ------------------------------------------------------------------------------ PyTorch reference (test only)
class TorchBlock(nn.Module):
    """Reference residual block with insightface's attribute names: bn1 conv1 bn2 prelu conv2(stride) bn3."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x):
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.downsample is None else self.downsample(x))


class TorchIResNet(nn.Module):
    """Reference network, NCHW: stem, four stride-2 stages, BN, flatten (c, h, w), fc, BatchNorm1d."""

    def __init__(self, layers, width, features, input_size=112):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        cin = width
        for k, depth in enumerate(layers):
            cout = width * 2 ** k
            blocks = [TorchBlock(cin, cout, 2)] + [TorchBlock(cout, cout, 1) for _ in range(depth - 1)]
            setattr(self, f"layer{k + 1}", nn.Sequential(*blocks))
            cin = cout
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(cin * (input_size // 16) ** 2, features)
        self.features = nn.BatchNorm1d(features, eps=1e-5)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def _randomised(model: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere, including BN running statistics and PReLU slopes; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                mod.weight.copy_(1 + 0.3 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=g))
                mod.running_mean.copy_(0.2 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
            elif isinstance(mod, nn.PReLU):
                mod.weight.copy_(0.1 + 0.3 * torch.rand(mod.weight.shape, generator=g))
            elif isinstance(mod, (nn.Conv2d, nn.Linear)):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) / mod.weight[0].numel() ** 0.5)
                if mod.bias is not None:
                    mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def torch_checkpoint(tmp_path_factory):
    model = _randomised(TorchIResNet(LAYERS, WIDTH, FEATURES), seed=0)
    path = tmp_path_factory.mktemp("iresnet") / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


def test_parity_with_torch_reference(torch_checkpoint):
    model, path = torch_checkpoint
    cfg, state = convert_iresnet(path)
    assert cfg == IResNetConfig(layers=LAYERS, width=WIDTH, num_features=FEATURES, input_size=112)
    ours = nnx.merge(abstract_iresnet(cfg)[0], state)
    images = np.random.default_rng(1).uniform(-1, 1, (2, 112, 112, 3)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    got = np.asarray(jax.jit(lambda m, x: m(x))(ours, jnp.asarray(images)))
    rel = rel_err(got, want)
    print(f"IResNet parity: max relative error {rel:.2e}")
    assert got.shape == (2, FEATURES)
    assert rel <= 1e-5


def test_ddp_prefix_and_bn_counters_are_accepted(torch_checkpoint, tmp_path):
    model, _ = torch_checkpoint
    sd = {f"module.{k}": v.contiguous() for k, v in model.state_dict().items()}
    assert any(k.endswith("num_batches_tracked") for k in sd)
    save_file(sd, str(tmp_path / "ddp.safetensors"))
    cfg, _ = convert_iresnet(tmp_path / "ddp.safetensors")
    assert cfg.layers == LAYERS


def test_mismatched_checkpoint_lists_every_problem(torch_checkpoint, tmp_path):
    model, _ = torch_checkpoint
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if k != "layer3.2.bn1.running_var"}
    sd["layer2.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match=r"2 parameters differ(.|\n)*layer2\.0\.conv1\.weight: config "
                                              r"expects \(16, 8, 3, 3\)(.|\n)*layer3\.2\.bn1\.running_var: missing"):
        convert_iresnet(tmp_path / "bad.safetensors")


def test_config_read_off_public_shapes():
    # iresnet50 at full width: 512·7·7 fc inputs, 3/4/14/3 blocks.
    shapes = {"conv1.weight": (64, 3, 3, 3), "fc.weight": (512, 512 * 49)}
    for k, depth in enumerate((3, 4, 14, 3)):
        shapes.update({f"layer{k + 1}.{j}.conv1.weight": (1,) for j in range(depth)})
    assert iresnet_config_from_shapes(shapes) == iresnet_config("iresnet50")
    with pytest.raises(CheckpointError, match="fc.weight has 1000 inputs"):
        iresnet_config_from_shapes({**shapes, "fc.weight": (512, 1000)})
    with pytest.raises(CheckpointError, match="no 'conv1.weight'"):
        iresnet_config_from_shapes({"fc.weight": (512, 512 * 49)})


def test_config_errors_name_the_field(unchecked):
    with pytest.raises(ConfigError, match=r"IResNetConfig.layers = \(1, 2\)"):
        IResNetConfig(layers=(1, 2))
    with pytest.raises(ConfigError, match="IResNetConfig.input_size = 100"):
        IResNetConfig(input_size=100)
    with pytest.raises(ValueError, match="iresnet77"):
        iresnet_config("iresnet77")


def test_wrong_input_size_is_explained(torch_checkpoint):
    cfg, state = convert_iresnet(torch_checkpoint[1])
    model = nnx.merge(abstract_iresnet(cfg)[0], state)
    with pytest.raises(ValueError, match=r"expected \[B, 112, 112, 3\]"):
        model(jnp.zeros((1, 64, 64, 3)))
    # encode_images resizes to the encoder's input size and keeps leading axes
    embed = jax.jit(encode_images)(model, jnp.zeros((2, 3, 64, 64, 3)))
    assert embed.shape == (2, 3, FEATURES)


def test_registry_builds_each_encoder_and_small_is_deterministic():
    assert set(IMAGE_ENCODERS) == {"small", "iresnet"}
    cfg = SmallEncoderConfig(widths=(4, 8), embed_dim=6)
    images = jax.random.uniform(jax.random.key(3), (2, 1, 24, 20, 3), minval=-1, maxval=1)
    encode = jax.jit(encode_images)
    a = encode(build_image_encoder("small", cfg, rngs=nnx.Rngs(7)), images)
    b = encode(SmallImageEncoder(cfg, rngs=nnx.Rngs(7)), images)
    c = encode(SmallImageEncoder(cfg, rngs=nnx.Rngs(8)), images)
    assert a.shape == (2, 1, 6)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a[0], a[1])  # the embedding depends on the image
    tiny = IResNetConfig(layers=(1, 1, 1, 1), width=4, num_features=8)
    built = nnx.eval_shape(lambda: build_image_encoder("iresnet", tiny, rngs=nnx.Rngs(0)))  # no init compiles
    assert isinstance(built, IResNet) and built.embed_dim == 8
    with pytest.raises(ValueError, match=r"'clip' is not registered: use one of \['iresnet', 'small'\]"):
        build_image_encoder("clip", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="takes a SmallEncoderConfig, got a IResNetConfig"):
        build_image_encoder("small", tiny, rngs=nnx.Rngs(0))
