"""Tests of the Slakh2100-format loader on tiny folders built in code (see slakh_fixtures.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from slakh_fixtures import make_slakh
from torch.utils.data import DataLoader

from gmsdi.data import slakh
from gmsdi.data.classes import CLASS_DESCRIPTIONS, PAPER_STEMS
from gmsdi.data.prompts import SEPARATOR, class_phrase, program_phrase

SR = 16000


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_slakh(tmp_path_factory.mktemp("slakh"))


@pytest.fixture()
def copy(root: Path, tmp_path: Path) -> Path:
    """A private copy of the dataset that a test may damage."""
    return Path(shutil.copytree(root, tmp_path / "copy"))


def _track(root: Path, name: str, split: str = "train") -> slakh.Track:
    return next(t for t in slakh.list_tracks(root, split) if t.name == name)


# ---------------------------------------------------------------------------------------------
# Metadata


def test_list_and_load_tracks(root: Path) -> None:
    tracks = slakh.list_tracks(root, "train")
    assert [t.name for t in tracks] == ["Track00001", "Track00002"]
    # A split folder works as root too.
    assert [t.name for t in slakh.list_tracks(root / "validation")] == ["Track00003"]

    a, b = tracks
    assert a.duration_s == pytest.approx(6.0) and a.sample_rate == SR and a.split == "train"
    assert [s.stem_id for s in a.stems] == ["S00", "S01", "S02", "S03"]
    assert [s.stem_class for s in a.stems] == ["bass", "drums", "piano", "bass"]
    assert [s.audio_rendered for s in a.stems] == [True, True, False, True]
    assert [s.stem_id for s in a.rendered_stems] == ["S00", "S01", "S03"]
    assert a.classes == ("bass", "drums")  # the unrendered piano is not in the mix
    bass = a.stems[0]
    assert (bass.program, bass.program_name, bass.is_drum) == (33, "Electric Bass (finger)", False)
    assert bass.audio_path == root / "train/Track00001/stems/S00.flac"
    assert bass.midi_path == root / "train/Track00001/MIDI/S00.mid"
    assert a.stems[1].is_drum and a.stems[1].program_name == "Standard Kit"
    assert b.sample_rate == 44100 and b.duration_s == pytest.approx(3.0)
    assert b.classes == ("guitar", "strings")  # "Strings (continued)" -> strings


# ---------------------------------------------------------------------------------------------
# MIDI activity


def test_activity_comes_from_midi(root: Path) -> None:
    a = _track(root, "Track00001")
    # The unrendered piano (notes 0-6 s) is ignored; all stem audio is non-silent everywhere.
    assert slakh.stem_activity(a, 0.0, 1.5) == {"S00": True, "S01": False, "S03": False}
    assert slakh.class_activity(a, 0.0, 1.5) == {"bass": True, "drums": False}
    assert slakh.class_activity(a, 3.0, 4.5) == {"bass": True, "drums": True}
    assert slakh.stem_activity(a, 3.0, 4.5) == {"S00": False, "S01": True, "S03": True}
    assert not any(slakh.stem_activity(a, 2.0, 3.0).values())
    # 0.1 s of bass notes in 1.9-2.5 s: below the default 0.25 s, above 0.05 s.
    assert not slakh.stem_activity(a, 1.9, 2.5)["S00"]
    assert slakh.stem_activity(a, 1.9, 2.5, min_active_s=0.05)["S00"]


def test_activity_grid_seconds(root: Path) -> None:
    a = _track(root, "Track00001")
    act = slakh.track_activity(a)
    assert act is slakh.track_activity(a)  # cached on the track
    secs = act.sounding_seconds(0.0, 6.0)
    # S00: 2 s; S01: 8 hits of 0.02 s, each counted as min_note_s = 0.1 s; S03: 2 s; union: 4 s.
    np.testing.assert_allclose(secs, [2.0, 0.8, 2.0, 4.0], atol=1e-9)
    np.testing.assert_allclose(act.sounding_seconds(1.93, 3.01), [0.07, 0.01, 0.01, 0.08], atol=1e-9)
    grid = act.sounding_seconds(np.array([0.0, 3.0]), np.array([1.0, 4.0]))
    assert grid.shape == (4, 2)


def test_activity_disk_cache(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = slakh.track_activity(_track(root, "Track00001"), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def no_midi(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("MIDI parsed although the activity is cached")

    monkeypatch.setattr(slakh, "stem_intervals", no_midi)
    again = slakh.track_activity(_track(root, "Track00001"), cache_dir=tmp_path)
    np.testing.assert_array_equal(first.cumulative, again.cumulative)


def test_activity_histogram(root: Path) -> None:
    tracks = slakh.list_tracks(root, "train")
    hist = slakh.activity_histogram(tracks, crop_seconds=1.0)
    # Track00001 crops of 1 s: bass, bass, -, bass+drums, bass+drums, -; Track00002: 3 x 2.
    assert hist == pytest.approx({0: 2 / 9, 1: 2 / 9, 2: 5 / 9})
    assert sum(hist.values()) == pytest.approx(1.0)
    overlapping = slakh.activity_histogram(tracks, crop_seconds=2.0, hop_seconds=0.5, by_class=True)
    assert sum(overlapping.values()) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Audio


def test_read_audio_regions(root: Path) -> None:
    a = root / "train/Track00001"
    x = slakh.read_audio(a / "stems/S00.flac", 1.0, 2.0, SR)
    assert x.dtype == np.float32 and x.shape == (32000,)
    np.testing.assert_allclose(x, 0.1, atol=1e-3)
    # S01 lasts 5 s: zeros past its end; a start past the end gives silence.
    y = slakh.read_audio(a / "stems/S01.flac", 4.5, 1.0, SR)
    np.testing.assert_allclose(y[:8000], 0.2, atol=1e-3)
    assert not y[8000:].any()
    assert not slakh.read_audio(a / "stems/S01.flac", 5.5, 1.0, SR).any()
    # S03 lasts 7 s: a whole-mix read trims it.
    assert slakh.read_audio(a / "stems/S03.flac", 0.0, 6.0, SR).shape == (96000,)
    assert slakh.read_audio(a / "mix.flac", 0.0, None, SR).shape == (96000,)


def test_read_audio_resamples_stereo_44k(root: Path, tmp_path: Path) -> None:
    mix = root / "train/Track00002/mix.flac"
    assert sf.info(str(mix)).channels == 2
    x = slakh.read_audio(mix, 1.0, 1.0, SR)
    assert x.shape == (SR,)
    np.testing.assert_allclose(x, 0.3, atol=2e-3)  # mean of channels 0.45 and 0.15, edges too
    assert slakh.read_audio(mix, 0.0, None, 22050).shape == (66150,)

    # A resampled crop equals the matching slice of the resampled whole file, edges included.
    t = np.arange(44100 * 2) / 44100
    tone = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 3300 * t)], axis=1) * 0.5
    sf.write(tmp_path / "tone.flac", tone, 44100, subtype="PCM_24")
    for rate in (SR, 22050):
        whole = slakh.read_audio(tmp_path / "tone.flac", 0.0, None, rate)
        for start in (0.003, 0.5, 0.7371):
            crop = slakh.read_audio(tmp_path / "tone.flac", start, 0.75, rate)
            first = round(start * rate)
            np.testing.assert_allclose(crop, whole[first : first + len(crop)], atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Mixture mode


def _phrases(tag: str, programs: list[str]) -> set[str]:
    return {class_phrase(tag), *CLASS_DESCRIPTIONS.get(tag, ()), *(program_phrase(p) for p in programs)}


def test_mixture_items(root: Path) -> None:
    ds = slakh.MixtureDataset(root, "train", sample_rate=SR, crop_seconds=1.0, crops_per_epoch=12)
    assert len(ds) == 12
    tracks = {t.name: t for t in ds.tracks}
    for i in range(len(ds)):
        item = ds[i]
        assert item["audio"].dtype == torch.float32 and item["audio"].shape == (1, SR)
        track, start = tracks[item["track"]], item["start"]
        assert 0.0 <= start <= track.duration_s - 1.0
        # Tags are exactly the MIDI-active classes of the crop; the crop is never empty.
        expected = [c for c, on in slakh.class_activity(track, start, start + 1.0).items() if on]
        assert item["tags"] == expected and expected
        assert "piano" not in item["tags"]  # unrendered
        parts = item["prompt"].split(SEPARATOR)
        assert len(parts) == len(item["tags"])
        for tag in item["tags"]:
            assert any(p in _phrases(tag, item["programs"]) for p in parts), (tag, item["prompt"])
        secs = slakh.track_activity(track).sounding_seconds(start, start + 1.0)
        assert 1.0 - secs[-1] <= ds.max_silent_fraction + 1e-9


def test_mixture_crop_tags_first_seconds(root: Path) -> None:
    """A crop in 0-1.5 s of Track00001 is tagged bass only (drums play in 3-5 s)."""
    ds = slakh.MixtureDataset(root / "train", sample_rate=SR, crop_seconds=1.5, crops_per_epoch=40)
    items = [ds[i] for i in range(len(ds))]
    early = [x for x in items if x["track"] == "Track00001" and x["start"] <= 0.25]
    assert early
    for item in early:
        assert item["tags"] == ["bass"] and item["programs"] == ["Electric Bass (finger)"]


def test_mixture_determinism(root: Path) -> None:
    def items(seed: int, epoch: int = 0) -> list[dict]:
        ds = slakh.MixtureDataset(root, "train", crop_seconds=1.0, crops_per_epoch=6, seed=seed)
        ds.set_epoch(epoch)
        return [ds[i] for i in range(len(ds))]

    a, b = items(3), items(3)
    for x, y in zip(a, b, strict=True):
        for key in ("track", "start", "prompt", "tags", "programs"):
            assert x[key] == y[key]
        assert torch.equal(x["audio"], y["audio"])
    assert [x["start"] for x in a] != [x["start"] for x in items(4)]
    assert [x["start"] for x in a] != [x["start"] for x in items(3, epoch=1)]


def test_mixture_never_reads_stems(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for stems in copy.rglob("stems"):
        shutil.rmtree(stems)
    opened: list[str] = []
    real = sf.SoundFile

    def spy(file: object, *args: object, **kwargs: object) -> sf.SoundFile:
        opened.append(str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(sf, "SoundFile", spy)
    ds = slakh.MixtureDataset(copy, "train", crop_seconds=1.0, crops_per_epoch=8)
    batch = next(iter(DataLoader(ds, batch_size=8, collate_fn=slakh.collate_mixtures)))
    assert opened and all(Path(p).name == "mix.flac" for p in opened)
    assert batch["audio"].shape == (8, 1, SR) and batch["audio"].dtype == torch.float32
    assert len(batch["tags"]) == len(batch["prompt"]) == 8 and isinstance(batch["prompt"][0], str)


def test_mixture_length_proportional_sampling(root: Path) -> None:
    ds = slakh.MixtureDataset(root, "train", crop_seconds=0.5, crops_per_epoch=300, max_tries=1,
                              max_silent_fraction=1.0)
    names = [ds[i]["track"] for i in range(len(ds))]
    # Track00001 is 6 s and Track00002 3 s long.
    assert np.mean(np.asarray(names) == "Track00001") == pytest.approx(2 / 3, abs=0.08)


# ---------------------------------------------------------------------------------------------
# Stems mode


def test_stems_whole_tracks(root: Path) -> None:
    with pytest.warns(UserWarning, match="piano"):
        ds = slakh.StemsDataset(root, "train", classes=PAPER_STEMS, sample_rate=SR)
    assert len(ds) == 2
    a, b = ds[0], ds[1]
    assert a["classes"] == list(PAPER_STEMS) and a["track"] == "Track00001" and a["start"] == 0.0
    assert a["stems"].shape == (4, 96000) and a["mix"].shape == (1, 96000)
    assert a["stems"].dtype == torch.float32 and a["active"].dtype == torch.bool
    stems = a["stems"].numpy()
    # bass = S00 (0.1) + S03 (0.05, 7 s trimmed to 6 s); drums 0.2 for its 5 s; no guitar; the
    # piano is not rendered, so zeros and inactive although its MIDI plays.
    np.testing.assert_allclose(stems[0], 0.15, atol=1e-3)
    np.testing.assert_allclose(stems[1, : 5 * SR], 0.2, atol=1e-3)
    assert not stems[1, 5 * SR :].any() and not stems[2].any() and not stems[3].any()
    assert a["active"].tolist() == [True, True, False, False]
    np.testing.assert_allclose(a["mix"][0].numpy(), stems.sum(0), atol=2e-3)
    # 44.1 kHz stereo stems are resampled and downmixed.
    assert b["stems"].shape == (4, 3 * SR)
    np.testing.assert_allclose(b["stems"][2, 1000:-1000].numpy(), 0.2, atol=2e-3)
    assert b["active"].tolist() == [False, False, True, False]


def test_stems_include_other(root: Path) -> None:
    ds = slakh.StemsDataset(root, "train", classes=("guitar",), include_other=True)
    a, b = ds[0], ds[1]
    assert a["classes"] == ["guitar", "other"] and a["stems"].shape == (2, 96000)
    np.testing.assert_allclose(a["stems"][1].numpy(), a["mix"][0].numpy(), atol=2e-3)
    np.testing.assert_allclose(b["stems"][1, 1000:-1000].numpy(), 0.1, atol=2e-3)  # strings
    assert b["active"].tolist() == [True, True]
    mixed = slakh.StemsDataset(root, "train", classes=("guitar",), mix_from_stems=True)[1]
    torch.testing.assert_close(mixed["mix"][0], mixed["stems"].sum(0))


def test_stems_hop_crops(root: Path) -> None:
    ds = slakh.StemsDataset(root, "train", classes=("bass", "drums"), crop_seconds=2.0, hop_seconds=1.0)
    assert [(ds[i]["track"], ds[i]["start"]) for i in range(len(ds))] == [
        *[("Track00001", float(s)) for s in range(5)],
        ("Track00002", 0.0),
        ("Track00002", 1.0),
    ]
    item = ds[4]  # Track00001, 4-6 s: drums audio ends at 5 s, its hits at 4.75 s
    assert item["stems"].shape == (2, 2 * SR) and item["mix"].shape == (1, 2 * SR)
    np.testing.assert_allclose(item["stems"][1, :SR].numpy(), 0.2, atol=1e-3)
    assert not item["stems"][1, SR:].any()
    assert item["active"].tolist() == [True, True]
    assert ds[0]["active"].tolist() == [True, False]
    batch = slakh.collate_stems([ds[0], ds[1]])
    assert batch["stems"].shape == (2, 2, 2 * SR) and batch["active"].shape == (2, 2)


def test_stems_random_crops_deterministic(root: Path) -> None:
    def starts(seed: int) -> list[tuple[str, float]]:
        ds = slakh.StemsDataset(root, "train", classes=("bass",), crop_seconds=1.0, seed=seed)
        assert len(ds) == 9 and ds[0]["stems"].shape == (1, SR)
        return [(ds[i]["track"], ds[i]["start"]) for i in range(len(ds))]

    assert starts(0) == starts(0) != starts(1)


def test_stems_missing_stem_file(copy: Path) -> None:
    (copy / "train/Track00001/stems/S01.flac").unlink()
    with pytest.raises(FileNotFoundError, match="on_missing"):
        slakh.StemsDataset(copy, "train", classes=("drums", "guitar"))
    with pytest.warns(UserWarning, match="Track00001"):
        skipped = slakh.StemsDataset(copy, "train", classes=("drums", "guitar"), on_missing="skip")
    assert [t.name for t in skipped.tracks] == ["Track00002"]
    zeros = slakh.StemsDataset(copy, "train", classes=("drums", "guitar"), on_missing="zeros")
    assert not zeros[0]["stems"].any() and zeros[0]["active"].tolist() == [True, False]
    # Only the requested classes' files matter.
    assert len(slakh.StemsDataset(copy, "train", classes=("guitar",))) == 2


# ---------------------------------------------------------------------------------------------
# Command line


def test_resample_cli(root: Path, tmp_path: Path) -> None:
    dst = tmp_path / "slakh16k"
    assert slakh.main(["resample", "--src", str(root), "--dst", str(dst), "--sample-rate", "16000"]) == 0
    info = sf.info(str(dst / "train/Track00002/mix.flac"))
    assert (info.samplerate, info.channels, info.format) == (SR, 1, "FLAC")
    assert abs(info.frames - 3 * SR) <= 1
    assert sf.info(str(dst / "train/Track00002/stems/S01.flac")).samplerate == SR
    for rel in ("train/Track00002/metadata.yaml", "train/Track00002/MIDI/S00.mid",
                "train/Track00001/all_src.mid"):
        assert (dst / rel).read_bytes() == (root / rel).read_bytes()
    assert not list(dst.rglob("*.part"))
    ds = slakh.StemsDataset(dst, "train", classes=("guitar", "strings"))
    item = ds[1]
    np.testing.assert_allclose(item["stems"][:, 1000:-1000].numpy().mean(1), [0.2, 0.1], atol=2e-3)
    assert slakh.list_tracks(dst, "train")[1].sample_rate == SR


def test_stats_cli(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert slakh.main(["stats", "--root", str(root), "--split", "train", "--crop-seconds", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 tracks" in out and "0.003 hours" in out and "9 crops" in out
    assert "55.56%" in out
    assert slakh.main(["stats", "--root", str(root)]) == 1
    assert "pass one of them as split" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Errors


def test_error_missing_and_empty_folders(tmp_path: Path, root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        slakh.list_tracks(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no track folders"):
        slakh.list_tracks(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no 'test' split"):
        slakh.list_tracks(root, "test")
    with pytest.raises(ValueError, match="pass one of them as split"):
        slakh.list_tracks(root)


def test_error_malformed_metadata(copy: Path) -> None:
    meta = copy / "train/Track00001/metadata.yaml"
    meta.write_text("stems: [S00, S01]\n")
    with pytest.raises(ValueError, match="malformed metadata .*metadata.yaml"):
        slakh.list_tracks(copy, "train")
    meta.write_text("stems: {S00: {audio_rendered: true\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        slakh.load_track(meta.parent)


def test_error_unknown_class(root: Path) -> None:
    with pytest.raises(ValueError, match=r"kazoo.*bass, drums, guitar, strings"):
        slakh.StemsDataset(root, "train", classes=("bass", "kazoo"))
    with pytest.raises(ValueError, match="other"):
        slakh.StemsDataset(root, "train", classes=("bass", "other"))


def test_error_corrupt_audio(copy: Path) -> None:
    stem = copy / "train/Track00001/stems/S00.flac"
    stem.write_bytes(b"this is not a flac file" * 50)
    with pytest.raises(ValueError, match=r"could not read audio file .*S00\.flac"):
        slakh.read_audio(stem, 0.0, 1.0, SR)
    ds = slakh.StemsDataset(copy, "train", classes=("bass",))
    with pytest.raises(ValueError, match=r"S00\.flac"):
        ds[0]
    (copy / "train/Track00002/mix.flac").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ValueError, match=r"could not read audio file .*Track00002/mix\.flac"):
        slakh.list_tracks(copy, "train")
