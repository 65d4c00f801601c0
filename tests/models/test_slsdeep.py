"""lessons_lib.models.slsdeep: SLSDeep (Sarker et al. 2018), its readings, weights and groups."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet50

from lessons_lib.losses import NLLEPELoss
from lessons_lib.models import build_model
from lessons_lib.models.complexity import count_flops, count_parameters
from lessons_lib.models.slsdeep import SLSDeep, slsdeep, slsdeep_splitter

PAPER_PARAMS = 60_226_628  # PPN 1024, concat 6144 (the paper's text)
CODE_PARAMS = 46_591_044  # PPN 512, concat 4096 (the public code)
PAPER_GFLOPS = 242.97  # forward, 384 x 384, multiply-add = 2


def _meta(**kwargs) -> SLSDeep:
    """Build on the meta device: no memory, no initialisation work."""
    with torch.device("meta"):
        return slsdeep(**kwargs)


def _small(seed: int = 0, **kwargs) -> SLSDeep:
    """A real CPU model with a narrow pyramid (fast; same structure)."""
    torch.manual_seed(seed)
    return slsdeep(ppn_width=kwargs.pop("ppn_width", 16), **kwargs)


def test_parameter_count_of_the_paper_reading_and_its_parts() -> None:
    model = _meta()
    assert count_parameters(model) == PAPER_PARAMS
    parts = {
        "encoder": 23_508_032,
        "pyramid_pooling": 8_396_800,
        "fuse": 28_312_576,
        "head": 9_220,
        "skips": 0,
    }
    assert {name: count_parameters(getattr(model, name)) for name in parts} == parts


def test_parameter_count_of_the_public_code_reading() -> None:
    assert count_parameters(_meta(ppn_width=512)) == CODE_PARAMS


def test_layers_read_like_the_paper() -> None:
    model = _meta()
    bins = [level[0].output_size for level in model.pyramid_pooling]
    assert bins == [1, 2, 3, 6]
    assert all(level[1].conv.out_channels == 1024 for level in model.pyramid_pooling)
    fuse, head = model.fuse.conv, model.head.conv
    assert (fuse.in_channels, fuse.out_channels, fuse.kernel_size) == (6144, 512, (3, 3))
    assert (head.in_channels, head.out_channels, head.kernel_size) == (512, 2, (3, 3))
    assert model.dropout.p == 0.5
    # DRN-A: stride 1 and dilations 2 / 4 in the last two stages
    assert model.encoder.layer3[1].conv2.dilation == (2, 2)
    assert model.encoder.layer4[1].conv2.dilation == (4, 4)


def test_flops_at_384() -> None:
    flops = count_flops(_meta(), (1, 3, 384, 384))
    assert flops == pytest.approx(PAPER_GFLOPS * 1e9, rel=0.01)


def test_encoder_has_output_stride_8() -> None:
    model = _meta()
    out = model.encoder(torch.empty(1, 3, 384, 384, device="meta"))
    assert tuple(out.shape) == (1, 2048, 48, 48)
    small = _small()
    with torch.no_grad():
        assert tuple(small.eval().encoder(torch.randn(1, 3, 64, 64)).shape) == (1, 2048, 8, 8)


def test_output_is_log_probabilities_at_the_input_size() -> None:
    model = _small().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert tuple(out.shape) == (2, 2, 64, 64)
    assert (out <= 0).all()
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(2, 64, 64))


def test_all_skips_runs_at_any_multiple_of_8_and_adds_parameters() -> None:
    assert count_parameters(_meta(skips="all")) == PAPER_PARAMS + 533_568
    model = _small(skips="all").eval()
    assert set(model.skips) == {"stem", "layer1", "layer2", "layer3"}
    with torch.no_grad():
        out = model(torch.randn(1, 3, 72, 40))  # multiples of 8, not of 16
    assert tuple(out.shape) == (1, 2, 72, 40)
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(1, 72, 40))


def test_unknown_keyword_is_an_error() -> None:
    with pytest.raises(TypeError, match="foo"):
        build_model("slsdeep", foo=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"skips": "some"}, "skips"),
        ({"n_out": 1}, "n_out"),
        ({"ppn_width": 0}, "ppn_width"),
        ({"dropout": 1.0}, "dropout"),
        ({"in_channels": 4, "pretrained": True}, "in_channels"),
        ({"in_channels": 4, "pretrained": "/no/such/file.pth"}, "in_channels"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        slsdeep(**kwargs)


def test_other_input_channels_from_scratch() -> None:
    model = _small(in_channels=1).eval()
    assert "random" in model.weights_source
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 1, 32, 32)).shape) == (1, 2, 32, 32)


@pytest.mark.parametrize("skips", ["one", "all"])
def test_splitter_gives_encoder_and_decoder_groups(skips: str) -> None:
    model = _meta(skips=skips)
    assert model.splitter is slsdeep_splitter
    encoder, decoder = model.splitter(model)
    ids = [id(p) for p in encoder + decoder]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert {id(p) for p in encoder} == {id(p) for p in model.encoder.parameters()}
    assert pickle.loads(pickle.dumps(model.splitter)) is slsdeep_splitter


def test_pretrained_path_loads_the_encoder(tmp_path: Path) -> None:
    torch.manual_seed(1)
    state = resnet50(weights=None).state_dict()
    path = tmp_path / "resnet50.pth"
    torch.save(state, path)
    model = slsdeep(pretrained=path)
    assert str(path) in model.weights_source
    torch.testing.assert_close(model.encoder.stem[0].weight, state["conv1.weight"])
    torch.testing.assert_close(model.encoder.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    torch.testing.assert_close(
        model.encoder.layer1[0].bn1.running_mean, state["layer1.0.bn1.running_mean"]
    )


def test_missing_pretrained_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "resnet50-0676ba61.pth"
    with pytest.raises(ValueError, match="resnet50-0676ba61.pth"):
        slsdeep(pretrained=missing)


def test_nll_epe_loss_takes_the_output_directly() -> None:
    model = _small().eval()
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, 8:24, 8:24] = 1
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    loss = NLLEPELoss()
    # log_softmax of log-probabilities is the identity: NLL is plain nll_loss on the output
    torch.testing.assert_close(NLLEPELoss(alpha=0.0)(out, target), F.nll_loss(out, target))
    torch.testing.assert_close(loss.activation(out), out.exp())


@pytest.mark.parametrize("skips", ["one", "all"])
def test_gradient_reaches_every_parameter(skips: str) -> None:
    model = _small(seed=2, skips=skips).train()
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, 8:24, 4:20] = 1
    NLLEPELoss()(model(torch.randn(2, 3, 32, 32)), target).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
