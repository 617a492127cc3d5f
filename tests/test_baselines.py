"""The evaluation's baselines: MSDM (joint model, its Dirac separator and generation), weakly-supervised
MSDM's data, the references (ideal ratio mask, unprocessed mixture), and their training through
train/train.py (`data.source`)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_fixtures import make_four_stem_set
from script_loader import load_script
from torch import nn

from gmsdi.eval import ideal_ratio_mask, score_separation, unprocessed_mixture
from gmsdi.eval.methods import make_separator
from gmsdi.eval.runner import run_separation, split_dataset
from gmsdi.inference.msdm import JointDenoiser, joint_config
from gmsdi.inference.tasks import sample_stack, separate_sources
from gmsdi.models import build_model, model_config
from gmsdi.pipeline import MSDMPipeline
from gmsdi.sampling import get_sigmas_karras

ROOT = Path(__file__).resolve().parents[1]
STEMS = ["bass", "drums", "guitar", "piano"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def four(tmp_path_factory) -> Path:
    return make_four_stem_set(tmp_path_factory.mktemp("four"), splits=("test",))


# -- references -------------------------------------------------------------------------------------------
def test_irm_scores_high_and_mixture_is_the_floor(four: Path) -> None:
    ds = split_dataset(four, "test", STEMS)
    irm = run_separation(make_separator("irm", None, STEMS), ds, 32768, max_chunks=4).scores
    floor = run_separation(make_separator("mixture", None, STEMS), ds, 32768, max_chunks=4).scores
    assert irm.num_windows == floor.num_windows > 0
    assert irm.per_stem()["All"] > 15.0 and min(irm.per_stem().values()) > 12.0
    assert all(abs(v) < 1e-9 for v in floor.per_stem().values())


def test_ideal_ratio_mask_closed_forms() -> None:
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((3, 8000)).astype(np.float32) * np.array([[0.1], [0.2], [0.3]], dtype=np.float32)
    mix = refs.sum(0)
    est = ideal_ratio_mask(mix, refs)
    assert est.shape == refs.shape and est.dtype == np.float32
    np.testing.assert_allclose(est.sum(0), mix, atol=1e-4)  # masks sum to 1 where anything sounds
    one = ideal_ratio_mask(refs[0], refs[:1])  # a single source: the mask is 1
    np.testing.assert_allclose(one[0], refs[0], atol=1e-5)
    np.testing.assert_array_equal(unprocessed_mixture(mix, 3), np.stack([mix] * 3))
    s = score_separation(unprocessed_mixture(mix, 3), refs, ["a", "b", "c"], mixture=mix, window_seconds=0.25,
                         hop_seconds=0.125)
    assert s.num_windows == 3 and np.all(s.sisdri == 0.0)
    with pytest.raises(ValueError, match="references"):
        ideal_ratio_mask(mix, refs[:, :100])


# -- MSDM inference -------------------------------------------------------------------------------------
class JointGaussian(nn.Module):
    """Independent Gaussian stems, one per channel: D(x; σ)_k = v_k/(v_k + σ²)·x_k (closed form)."""

    def __init__(self, variances: list[float]) -> None:
        super().__init__()
        self.register_buffer("v", torch.tensor(variances))
        config = joint_config(model_config("tiny", text_encoder="hash"), len(variances))
        self.model_config = dataclasses.replace(config, edm=dataclasses.replace(config.edm, sigma_max=80.0))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond=None) -> torch.Tensor:
        v = self.v[None, :, None]
        return x * v / (v + sigma.reshape(-1, 1, 1) ** 2)


def test_joint_config_widens_the_first_level() -> None:
    cfg = joint_config(model_config("default"), 4)
    assert cfg.unet.in_channels == 4 and cfg.unet.channels[0] == 256 and cfg.unet.cross_attn_levels == ()
    assert cfg.unet.channels[1:] == model_config("default").unet.channels[1:]
    with pytest.raises(ValueError, match="n_sources"):
        joint_config(cfg, 0)


@pytest.mark.parametrize("constrained", [0, 3])
def test_msdm_dirac_sums_to_the_mixture(constrained: int) -> None:
    model = build_model(joint_config(model_config("tiny", text_encoder="hash"), 4), seed=0).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    mix = 0.3 * torch.randn(2, 1024, generator=torch.Generator().manual_seed(0))
    denoiser = JointDenoiser(model)
    out = separate_sources(denoiser, mix, 4, get_sigmas_karras(4, 1e-4, 1.0), constrained=constrained, s_churn=20.0,
                        generator=torch.Generator().manual_seed(2))
    assert out.shape == (2, 4, 1024) and denoiser.calls == 4
    torch.testing.assert_close(out.sum(dim=1), mix, rtol=0, atol=1e-5)  # float32 rounding
    with pytest.raises(ValueError, match="stack"):
        denoiser(torch.zeros(1, 3, 1024), torch.ones(1))


def test_msdm_dirac_approaches_the_gaussian_posterior() -> None:
    """Gaussian stems: E[x_k | Σ x = y] = (v_k / V)·y, which the joint-score separator reaches."""
    v = [0.01, 0.02, 0.03]
    mix = math.sqrt(sum(v)) * torch.randn(1, 20000, generator=torch.Generator().manual_seed(0))
    out = separate_sources(JointDenoiser(JointGaussian(v)), mix, 3, get_sigmas_karras(100, 1e-4, 1.0), constrained=2,
                        s_churn=20.0, resamples=2, generator=torch.Generator().manual_seed(1))
    for k in range(3):
        gain = float((out[0, k] * mix[0]).sum() / (mix[0] ** 2).sum())
        assert gain == pytest.approx(v[k] / sum(v), abs=0.04)


def test_msdm_generation_matches_the_prior_and_keeps_known_stems() -> None:
    v = [0.01, 0.04]
    model = JointGaussian(v)
    sigmas = get_sigmas_karras(40, 1e-3, 80.0)
    out = sample_stack(JointDenoiser(model), 2, 4096, sigmas, batch=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 2, 4096)
    np.testing.assert_allclose(out.var(dim=(0, 2)).numpy(), v, rtol=0.15)
    known = torch.zeros(1, 2, 4096)
    known[0, 0] = 0.1
    mask = torch.zeros(1, 2, 4096, dtype=torch.bool)
    mask[0, 0] = True
    out = sample_stack(JointDenoiser(model), 2, 4096, sigmas, known=known, mask=mask,
                        generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[0, 0], known[0, 0])


@pytest.fixture(scope="module")
def msdm_pipe() -> MSDMPipeline:
    model = build_model(joint_config(model_config("tiny", text_encoder="hash"), 4), seed=0)
    return MSDMPipeline(model, STEMS, device="cpu")


def test_msdm_pipeline_tasks(msdm_pipe: MSDMPipeline) -> None:
    rng = np.random.default_rng(0)
    mix = (0.3 * rng.standard_normal(5000)).astype(np.float32)
    fast = {"steps": 2, "window_seconds": 0.128, "seed": 0}
    with pytest.raises(ValueError, match="too few for MSDM's Dirac separator with 4 stems"):
        msdm_pipe.separate(mix, **fast)
    assert msdm_pipe.separate(mix, dirac="projected", **fast).settings["dirac"] == "projected"
    r = msdm_pipe.separate(mix, **{**fast, "steps": 16})  # where MSDM's own form converges (14+ for 4 stems)
    assert list(r.stems) == STEMS and r.settings["chunks"] > 1 and r.settings["constrained"] == "piano"
    np.testing.assert_allclose(sum(r.stems.values()), mix, atol=1e-5)
    assert msdm_pipe.separate(mix, constrained="bass", **{**fast, "steps": 16}).settings["constrained"] == "bass"
    g = msdm_pipe.generate(seconds=0.3, **fast)
    assert all(a.shape == (4800,) for a in g.stems.values())
    np.testing.assert_allclose(g.mix, sum(g.stems.values()), atol=1e-6)
    bass = (0.2 * np.sin(np.arange(5000) / 100)).astype(np.float32)
    a = msdm_pipe.accompany({"bass": bass}, **fast)
    np.testing.assert_array_equal(a.stems["bass"], bass)
    assert a.settings["locked"] == ["bass"]
    quiet = msdm_pipe.accompany({"bass": bass}, silent=["guitar"], **fast)  # an absent instrument stays silent
    assert not quiet.stems["guitar"].any() and quiet.settings["silent"] == ["guitar"]
    with pytest.raises(ValueError, match="both locked and silent"):
        msdm_pipe.accompany({"bass": bass}, silent=["bass"], **fast)
    with pytest.raises(ValueError, match="not channels"):
        msdm_pipe.accompany({"flute": bass}, **fast)
    with pytest.raises(ValueError, match="every stem is locked"):
        msdm_pipe.accompany(dict.fromkeys(STEMS, bass), **fast)
    with pytest.raises(ValueError, match="channels but 3 stem names"):
        MSDMPipeline(msdm_pipe.model, STEMS[:3], device="cpu")


# -- training the baselines ----------------------------------------------------------------------------
train = load_script("gmsdi_train_baselines", ROOT / "train/train.py")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from gmsdi.data.synth import SynthConfig, render_dataset

    root = tmp_path_factory.mktemp("data") / "synthslakh-tiny"
    render_dataset(root, 4, 0, SynthConfig(seconds=6.0), workers=1, progress=False)
    return root


def _rows(path: Path) -> list[dict]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def test_msdm_tiny_training_and_export(tmp_path: Path, tiny_data: Path) -> None:
    args = ["--config", str(ROOT / "train/configs/msdm-tiny.yaml"), "--set", f"out_dir={tmp_path}",
            f"data.root={tiny_data}", "max_steps=4", "log_every=2", "val_every=4", "sample_every=4"]
    with pytest.warns(UserWarning, match="no track of this dataset has the classes"):
        assert train.main(args) == 0
    run = tmp_path / "msdm-tiny"
    state = torch.load(run / "ckpt.pt", weights_only=False)
    assert state["model_config"]["unet"]["in_channels"] == 4 and state["step"] == 4
    losses = [float(r["loss"]) for r in _rows(run / "train.csv")]
    assert losses and all(math.isfinite(x) for x in losses)
    assert all(math.isfinite(float(v)) for k, v in _rows(run / "val.csv")[0].items() if k != "step")
    assert sorted(p.name for p in (run / "samples").glob("*.wav")) == [
        f"step0000004_{n}.wav" for n in ("bass", "drums", "guitar", "mix", "piano")]
    out = tmp_path / "msdm.safetensors"
    assert train.main(["--config", str(ROOT / "train/configs/msdm-tiny.yaml"), "--set", f"out_dir={tmp_path}",
                       "--export", str(out)]) == 0
    pipe = MSDMPipeline.from_pretrained(out, device="cpu")
    assert pipe.stems == STEMS and pipe.checkpoint == str(out)


@pytest.mark.filterwarnings("ignore:no track of this dataset has the classes")
def test_weak_msdm_items_training_and_source_errors(tmp_path: Path, tiny_data: Path) -> None:
    from gmsdi.data.supervised import JointStemsDataset, SingleStemDataset

    single = SingleStemDataset(tiny_data, "train", crop_seconds=1.0, crops_per_epoch=6, seed=0)
    for i in range(len(single)):
        item = single[i]
        assert item["audio"].shape == (1, 16000) and len(item["tags"]) == 1 and item["prompt"]
    joint = JointStemsDataset(tiny_data, "train", crop_seconds=1.0, crops_per_epoch=3, seed=0)
    assert joint[0]["audio"].shape == (4, 16000) and joint[0]["prompt"] == ""
    cfg = train.load_config(ROOT / "train/configs/weak_msdm-tiny.yaml", [f"data.root={tiny_data}"])
    assert cfg.data.source == "stems_single" and train.build_model_config(cfg).unet.in_channels == 1
    assert train.main(["--config", str(ROOT / "train/configs/weak_msdm-tiny.yaml"), "--set", f"out_dir={tmp_path}",
                       f"data.root={tiny_data}", "max_steps=2", "log_every=1", "val_every=2", "sample_every=0"]) == 0
    assert all(math.isfinite(float(r["loss"])) for r in _rows(tmp_path / "weak_msdm-tiny" / "train.csv"))
    with pytest.raises(ValueError, match="in_channels=2"):
        train.build_model_config(train.load_config(ROOT / "train/configs/msdm-tiny.yaml", ["model.unet.in_channels=2"]))
    assert train.main(["--config", str(ROOT / "train/configs/tiny.yaml"), "--set", "data.source=stems",
                       f"out_dir={tmp_path}", f"data.root={tiny_data}"]) == 2
    default = train.load_config(ROOT / "train/configs/default.yaml")  # existing configs keep GMSDI's setting
    assert default.data.source == "mixtures" and train.build_model_config(default).unet.in_channels == 1
