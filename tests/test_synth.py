"""SynthSlakh renderer: determinism, mixing, metadata, arrangement, soundfonts and errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import yaml

from gmsdi.data import synth
from gmsdi.data.classes import SYNTH_PROGRAMS
from gmsdi.data.compose import ArrangementConfig, arrange_music21, compose_song, music21_pieces
from gmsdi.data.synth import SynthConfig, render_dataset

SECONDS = 6.0


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    render_dataset(out, 3, seed=11, config=SynthConfig(seconds=SECONDS), split="auto", workers=1, progress=False)
    return out


def test_layout(rendered: Path):
    tracks = sorted(rendered.glob("*/Track*"))
    assert [t.parent.name for t in tracks] == ["test", "train", "validation"]
    for t in tracks:
        meta = yaml.safe_load((t / "metadata.yaml").read_text())
        assert (t / "mix.flac").is_file() and (t / "all_src.mid").is_file()
        assert meta["stems"], "a track has at least one stem"
        for sid in meta["stems"]:
            assert (t / "stems" / f"{sid}.flac").is_file()
            assert (t / "MIDI" / f"{sid}.mid").is_file()
        info = sf.info(t / "mix.flac")
        assert info.samplerate == 16000 and info.channels == 1
        assert info.frames == int(SECONDS * 16000)


def test_deterministic_across_processes(rendered: Path, tmp_path: Path):
    # Same arguments, but rendered by a pool of fresh processes in another order of work.
    render_dataset(tmp_path, 3, seed=11, config=SynthConfig(seconds=SECONDS), split="auto", workers=2,
                   progress=False)
    assert _files(tmp_path) == _files(rendered)


def test_other_seed_differs(rendered: Path, tmp_path: Path):
    render_dataset(tmp_path, 1, seed=12, config=SynthConfig(seconds=SECONDS), split="train", workers=1,
                   progress=False)
    a = (tmp_path / "train/Track00001/mix.flac").read_bytes()
    assert a != (rendered / "train/Track00001/mix.flac").read_bytes()


def test_stems_sum_to_mix_without_clipping(rendered: Path):
    for t in rendered.glob("*/Track*"):
        mix, _ = sf.read(t / "mix.flac")
        stems = [sf.read(p)[0] for p in sorted((t / "stems").glob("*.flac"))]
        total = np.sum(stems, axis=0)
        # 16-bit quantisation of each file: at most (K + 1) half-steps of 2**-15
        assert np.abs(total - mix).max() <= (len(stems) + 1) * 2.0**-15
        limit = 10 ** (-1.0 / 20) + 2.0**-15
        assert np.abs(mix).max() <= limit
        assert max(np.abs(s).max() for s in stems) <= limit
        assert np.abs(mix).max() > 0.05, "the mix is not silent"


def test_metadata_round_trip(rendered: Path):
    t = rendered / "train/Track00001"
    meta = yaml.safe_load((t / "metadata.yaml").read_text())
    assert yaml.safe_load(yaml.safe_dump(meta)) == meta
    for sid, s in meta["stems"].items():
        assert set(s) >= {"inst_class", "program_num", "is_drum", "midi_program_name", "audio_rendered"}
        midi = pretty_midi.PrettyMIDI(str(t / "MIDI" / f"{sid}.mid"))
        (inst,) = midi.instruments
        assert inst.program == s["program_num"] and inst.is_drum == s["is_drum"]
        if not s["is_drum"]:
            assert s["midi_program_name"] == pretty_midi.program_to_instrument_name(s["program_num"])
        assert s["inst_class"] == ("Drums" if s["is_drum"] else synth.family_of(s["program_num"], False))
    all_src = pretty_midi.PrettyMIDI(str(t / "all_src.mid"))
    assert len(all_src.instruments) == len(meta["stems"])


def test_midi_notes_only_in_active_sections(rendered: Path):
    for t in rendered.glob("*/Track*"):
        meta = yaml.safe_load((t / "metadata.yaml").read_text())
        sections = meta["synth"]["sections"]
        bounds = [s["start"] for s in sections] + [SECONDS + 1]
        for sid, s in meta["stems"].items():
            (inst,) = pretty_midi.PrettyMIDI(str(t / "MIDI" / f"{sid}.mid")).instruments
            for n in inst.notes:
                k = int(np.searchsorted(bounds, n.start + 0.05, side="right")) - 1  # humanised onsets
                k = max(0, min(k, len(sections) - 1))
                near = {k, max(0, k - 1)}
                assert any(s["stem_class"] in sections[j]["active"] for j in near)


def _crop_counts(songs, crop: float) -> np.ndarray:
    counts = []
    for song in songs:
        for t0 in np.arange(0.0, 32.0 - crop + 1e-9, crop):
            active = 0
            for p in song.parts:
                sounding = sum(max(0.0, min(n.end, t0 + crop) - max(n.start, t0)) for n in p.notes)
                active += sounding >= 0.25
            counts.append(active)
    return np.bincount(counts, minlength=8) / len(counts)


def test_arrangement_has_solo_and_duo_passages():
    config = ArrangementConfig(music21_fraction=0.0)
    songs = [compose_song(np.random.default_rng([5, i]), 32.0, config) for i in range(120)]
    frac = _crop_counts(songs, 4.0)
    assert frac[1] >= 0.15, frac
    assert frac[2] >= 0.25, frac
    assert frac[0] < 0.05, frac
    # the parameter controls it: all-dense sections give no solo crops
    dense = replace(config, active_weights=(0.0, 0.0, 0.0, 0.0, 1.0), min_instruments=5)
    songs = [compose_song(np.random.default_rng([5, i]), 32.0, dense) for i in range(30)]
    assert _crop_counts(songs, 4.0)[1] < 0.05


def test_all_classes_and_programs_are_used():
    config = ArrangementConfig(music21_fraction=0.0)
    songs = [compose_song(np.random.default_rng([6, i]), 16.0, config) for i in range(150)]
    classes = {p.stem_class for s in songs for p in s.parts}
    assert classes == set(SYNTH_PROGRAMS)
    basses = {p.program for s in songs for p in s.parts if p.stem_class == "bass"}
    kits = {p.program for s in songs for p in s.parts if p.is_drum}
    assert len(basses) >= 4 and len(kits) >= 4


def test_music21_arrangement_adds_bass_and_drums():
    pieces = music21_pieces()
    assert len(pieces) > 100
    chorale = next(p for p in pieces if "bwv" in p.lower())
    song = arrange_music21(np.random.default_rng(0), 20.0, ArrangementConfig(), chorale)
    assert song.source.startswith("music21:")
    classes = [p.stem_class for p in song.parts]
    assert "drums" in classes and "bass" in classes
    assert all(n.end <= 20.0 for p in song.parts for n in p.notes)


@pytest.mark.parametrize("soundfont", ["timgm6mb", "musescore"])
def test_other_soundfonts(soundfont: str, tmp_path: Path):
    render_dataset(tmp_path, 1, seed=2, config=SynthConfig(seconds=3.0, soundfont=soundfont), split="test",
                   workers=1, progress=False)
    mix, sr = sf.read(tmp_path / "test/Track00001/mix.flac")
    assert sr == 16000 and np.abs(mix).max() > 0.05


def test_sample_rate_is_configurable(tmp_path: Path):
    render_dataset(tmp_path, 1, seed=2, config=SynthConfig(seconds=2.0, sample_rate=22050), split="test",
                   workers=1, progress=False)
    assert sf.info(tmp_path / "test/Track00001/mix.flac").samplerate == 22050


def test_manifest(rendered: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(rendered, copy)
    synth.write_manifest(copy)
    assert synth.check_manifest(copy) == []
    (copy / "train/Track00001/mix.flac").write_bytes(b"changed")
    assert synth.check_manifest(copy) == ["train/Track00001/mix.flac"]


def test_missing_soundfont_is_a_clear_error(tmp_path: Path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        synth.find_soundfont(str(tmp_path / "nope.sf2"))
    assert synth.main(["--out", str(tmp_path), "--tracks", "1", "--soundfont", str(tmp_path / "x.sf2")]) == 2
    assert "error:" in capsys.readouterr().err


def test_unknown_class_and_bad_arguments():
    with pytest.raises(ValueError, match="synthesizer knows"):
        ArrangementConfig(class_weights={"kazoo": 1.0})
    with pytest.raises(ValueError, match="split"):
        render_dataset("/tmp/unused", 1, 0, SynthConfig(seconds=1.0), split="holdout")
    with pytest.raises(ValueError, match="sample_rate"):
        SynthConfig(sample_rate=100)
