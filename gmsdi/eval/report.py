"""docs/RESULTS.md and its plots, regenerated from the result files of `python -m gmsdi.eval`.

Nothing here measures anything: every number comes from a JSON file in the results folder (written
by the other subcommands) or from benchmarks/results/speed*.json. A method whose checkpoint is
missing is listed as "not trained yet"; one whose checkpoint exists but has no result file as "not
evaluated yet". Each table names the command that produced it, the checkpoint's sha256 (first 12
hex digits), the data set, the split and its size.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gmsdi.eval.methods import MODELS, SEPARATION_METHODS, file_sha256
from gmsdi.eval.runner import SINGLE_SOURCE_VARIANTS, SeparationRun, active_from_summary, scores_from_summary
from gmsdi.fileio import REPO_ROOT

STEMS = ("bass", "drums", "guitar", "piano")

SEPARATION_HEADER = ("| method | bass | drums | guitar | piano | **All** "
                     "| paper (Slakh2100): bass | drums | guitar | piano | All |")
TARGET_ALL_DB = 10.0  # issue #6: GMSDI ensemble "All" on the SynthSlakh test set
TARGET_MSDM_RATIO = 0.8  # issue #6: GMSDI ensemble / MSDM (the paper: 11.56 / 16.48 = 0.70)

REPRODUCE = """\
```bash
# 1. data (14 min) and the three models (200k steps each)
python -m gmsdi.data.synth --preset default --out data/synthslakh
nohup python train/train.py --config train/configs/bands.yaml > runs/bands.log 2>&1 &
nohup python train/train.py --config train/configs/msdm.yaml > runs/msdm.log 2>&1 &
nohup python train/train.py --config train/configs/weak_msdm.yaml > runs/weak_msdm.log 2>&1 &
python train/train.py --config train/configs/bands.yaml --export assets/gmsdi-synthslakh.safetensors
python train/train.py --config train/configs/msdm.yaml --export assets/msdm-synthslakh.safetensors
python train/train.py --config train/configs/weak_msdm.yaml --export assets/weak-msdm-synthslakh.safetensors
# 2. the ensemble choice on the validation split (writes assets/ensemble.json), then every table
python -m gmsdi.eval ensemble-choice
python -m gmsdi.eval separation
python -m gmsdi.eval separation --method gmsdi-separator --guidance 1 --tag w1
python -m gmsdi.eval fad
python -m gmsdi.eval sweep
python -m gmsdi.eval steps
python -m gmsdi.eval separation --method gmsdi-separator --dirac projected --tag projected
python -m gmsdi.eval steps --method gmsdi-separator --dirac projected --tag projected
python benchmarks/speed.py --threads 1
# 3. issue #8: the contrastive encoder, the no-tag model (6000 steps), their figures
nohup python train/train_contrastive.py --config train/configs/contrastive.yaml > runs/contrastive.log 2>&1 &
python train/train_contrastive.py --config train/configs/contrastive.yaml \\
    --export assets/contrastive-synthslakh.safetensors
nohup python train/train.py --config train/configs/notags.yaml > runs/notags.log 2>&1 &
python train/train.py --config train/configs/notags.yaml --export assets/gmsdi-notags-synthslakh.safetensors
python -m gmsdi.eval retrieval
python -m gmsdi.eval sensitivity
python -m gmsdi.eval instruments --train --models gmsdi msdm weak-msdm gmsdi-notags
python -m gmsdi.eval report
```
"""

# What the full runs cost on this 2-core CPU, from short runs of the default-size networks (untrained
# weights cost the same) on one thread while a training job shared the cores (2026-11-29):
# (step, unit cost, full run).
COSTS: tuple[tuple[str, str, str], ...] = (
    ("train GMSDI (default.yaml)", "0.77 s/step (2 threads; runs/default/train.csv)", "200k steps ≈ 43 h"),
    ("train MSDM (msdm.yaml)", "1.3 s/step on one thread alone, 1.6 beside another job (runs/msdm/train.csv)",
     "200k steps ≈ 72–89 h (6000: 2.5 h)"),
    ("train weakly-supervised MSDM (weak_msdm.yaml)", "as GMSDI (the same network)", "≈ 43 h"),
    ("`ensemble-choice` (60 validation tracks, 900 chunks of 2.048 s)",
     "separator 11.6 s + extractor 4 × 5.9 s per chunk", "≈ 8.8 h (`--tracks 20`: 2.9 h)"),
    ("`separation` (120 test tracks, 1800 chunks)",
     "per chunk: separator 11.6 s, extractor 23.4 s, MSDM 4.0 s, weakly-supervised MSDM ≈ 6 s "
     "(est.: 4 rows, not 8), IRM 0.06 s",
     "≈ 22 h (+ 2.9 h for `--tag w1`)"),
    ("`fad` (128 clips of 6 s per set)",
     "per clip: 4 stems 43 s (MSDM 14 s), accompaniment 21 s (MSDM 14 s), one stem 13–19 s", "≈ 26 h"),
    ("`sweep` (10 settings × 64 clips of 6 s)", "43 s per clip", "≈ 7.6 h"),
    ("`steps` (10 tracks, 4…128 steps)", "∝ steps", "≈ 2.6 h"),
)


def costs_table() -> list[str]:
    return ["Cost on this 2-core CPU, measured on short runs of the default-size networks (untrained weights "
            "cost the same) on one thread while a training job shared the cores; two free threads are roughly "
            "twice as fast, a GPU far faster (`--device cuda`):", "", "| step | unit cost | full run |",
            "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in COSTS), ""]


def _load_results(folder: Path, quick: bool) -> dict[str, dict[str, Any]]:
    """name -> result; a full report ignores files written by `--quick` runs."""
    out = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and (quick or not data.get("quick")):
                out[path.stem] = data
    return out


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _per_stem(res: dict[str, Any]) -> str:
    """"bass 1.00 · guitar 0.00 (strings) · ...": per named class, in prompt order, the share of its stems the
    probe names correctly ("–" if all are silent) and, when some are not, what the others most often
    sound like."""
    out = []
    for cls in dict.fromkeys(c["named"] for c in res["clips"]):
        # recall is over non-silent stems (`scores`), so silent ones are left out of the bracket too
        wrong = Counter(c["predicted"] for c in res["clips"]
                        if c["named"] == cls and c["predicted"] is not None and c["predicted"] != cls)
        heard = f" ({wrong.most_common(1)[0][0].replace('_', ' ')})" if wrong else ""
        recall = res["per_class"].get(cls, {}).get("recall")  # absent when all its stems are silent
        out.append(f"{cls.replace('_', ' ')} {_fmt(recall, 2)}{heard}")
    return " · ".join(out)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _short(sha: str | None) -> str:
    return f"`{sha[:12]}`" if sha else "–"


def _model_status() -> dict[str, dict[str, Any]]:
    """Per model: whether its checkpoint is in the repository, and its sha256."""
    out = {}
    for name, spec in MODELS.items():
        path = spec.checkpoint_path
        out[name] = {"exists": path.is_file(), "sha256": file_sha256(path) if path.is_file() else None,
                     "path": spec.checkpoint}
    return out


def _provenance(r: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]]) -> str:
    """The line under a table: command, checkpoint, data set and size."""
    model = r.get("model") or {}
    parts = [f"`{r.get('command', '?')}`"]
    if model.get("checkpoint_sha256"):
        st = status.get(model.get("model", ""), {})
        current = st.get("sha256")
        # a run on another file than the model's own (--checkpoint MODEL=PATH) is never stale
        own_file = model.get("checkpoint") is None or Path(model["checkpoint"]).name == Path(st.get("path", "")).name
        changed = own_file and current is not None and current != model["checkpoint_sha256"]
        stale = " (**stale**: the checkpoint has changed since)" if changed else ""
        parts.append(f"checkpoint {model.get('checkpoint')} sha256 {_short(model['checkpoint_sha256'])}{stale}")
    elif model:
        parts.append("a tiny untrained model built in code (`--quick`)")
    d = r.get("data") or {}
    if d:
        parts.append(f"{d.get('root')} `{d.get('split')}` split, {d.get('tracks_used')} of {d.get('tracks_in_split')} "
                     f"tracks ({d.get('seconds_in_split')} s in the split); mixture = {d.get('mixture')}")
    if r.get("quick"):
        parts.append("**quick mode: not a result**")
    parts.append(f"{r.get('date', '')}, torch {r.get('torch', '?')}, {r.get('threads', '?')} thread(s)")
    return "; ".join(parts)


def _missing(model: str | None, status: Mapping[str, Mapping[str, Any]]) -> str:
    if model is None:
        return "not evaluated yet"
    return "not evaluated yet" if status[model]["exists"] else "not trained yet"


def _derived_ensemble(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ensemble row from the separator's and the extractor's per-window scores and the validation
    choice (assets/ensemble.json), when it was not run on its own: the same windows, per stem the
    chosen method's scores."""
    sep, ext = results.get("separation-gmsdi-separator"), results.get("separation-gmsdi-extractor")
    choice_file = REPO_ROOT / "assets" / "ensemble.json"
    if sep is None or ext is None or not choice_file.is_file():
        return None
    choice = json.loads(choice_file.read_text()).get("choice", {})
    stems = sep["stems"]
    if ext["stems"] != stems or sep["results"]["per_window"]["start"] != ext["results"]["per_window"]["start"]:
        return None
    a, b = scores_from_summary(sep["results"], stems), scores_from_summary(ext["results"], stems)
    pick = np.array([choice.get(s, "extractor") == "separator" for s in stems])
    a.sisdr = np.where(pick[None], a.sisdr, b.sisdr)
    run = SeparationRun(a, active_from_summary(sep["results"], stems))
    return {"sisdri": a.per_stem("sisdri"), "sisdri_active": run.per_stem_active("sisdri"),
            "choice": {s: ("separator" if p else "extractor") for s, p in zip(stems, pick, strict=True)}}


def _separation_table(results: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]], metric: str,
                      paper: bool) -> list[str]:
    header = SEPARATION_HEADER if paper else "| method | bass | drums | guitar | piano | **All** |"
    lines = [header, "|---" * header.count(" | ") + "|---|"]
    for name, spec in SEPARATION_METHODS.items():
        r = results.get(f"separation-{name}")
        values = (r["results"].get(metric) if r is not None else
                  (d or {}).get(metric) if name == "gmsdi-ensemble" and (d := _derived_ensemble(results)) else None)
        if values:
            ours = " | ".join(_fmt(values.get(k)) for k in STEMS) + f" | **{_fmt(values.get('All'))}**"
        else:
            ours = f"{_missing(spec.model, status)} | | | | "
        if paper:
            ref = " | ".join(_fmt(v) for v in spec.paper) if spec.paper else (
                "0 | 0 | 0 | 0 | 0" if name == "mixture" else "– | – | – | – | –")
            ours += f" | {ref}"
        lines.append(f"| {spec.label} | {ours} |")
    return lines


def separation_section(results: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["## Separation: SI-SDRi (dB), MSDM protocol", "",
             "Each test track's four-stem mixture (the sum of its bass, drums, guitar and piano stems) is separated "
             "in model-length chunks (the tail that does not fill a chunk is dropped), the chunks are concatenated "
             "and scored in 4 s windows with a 2 s hop; windows where at most one stem is active are skipped; "
             "the table gives the mean over windows per stem and All, the mean of the four (METHOD.md §4). "
             "The paper's numbers are on Slakh2100 (real instruments, 22 kHz), ours on SynthSlakh (16 kHz): "
             "they are beside ours for reference, not for a like-for-like comparison.", "",
             *_separation_table(results, status, "sisdri", paper=True), ""]
    for name, spec in SEPARATION_METHODS.items():
        r = results.get(f"separation-{name}")
        if r is not None:
            lines.append(f"- {spec.label}: {_provenance(r, status)}; {r['results']['windows']} windows "
                         f"({r['results']['windows_skipped']} skipped), {r['results']['seconds']:.0f} s of audio.")
        elif name == "gmsdi-ensemble" and (d := _derived_ensemble(results)) is not None:
            lines.append(f"- {spec.label}: derived from the separator and extractor rows with the validation "
                         f"choice of assets/ensemble.json ({', '.join(f'{k}: {v}' for k, v in d['choice'].items())}).")
    lines += ["", "**Over the windows where each stem plays.** The protocol scores every stem in every kept "
              "window, silent ones included; there SI-SDR is a ratio of MSDM's 1e-8 regularisers, so a near-silent "
              "estimate of a silent stem gains tens of dB over the mixture (the ideal ratio mask, whose estimate of "
              "a silent stem is exactly zero, gets 50-80 dB). The same runs, averaged only over the windows where "
              "the reference stem is not silent:", "",
              *_separation_table(results, status, "sisdri_active", paper=False), ""]
    ens = results.get("separation-gmsdi-ensemble") or {}
    ens_all = (ens.get("results") or {}).get("sisdri", {}).get("All")
    if ens_all is None and (d := _derived_ensemble(results)) is not None:
        ens_all = d["sisdri"]["All"]
    msdm_all = ((results.get("separation-msdm") or {}).get("results") or {}).get("sisdri", {}).get("All")
    gap = (f" (missed by {TARGET_ALL_DB - ens_all:.2f} dB; the prompt-sensitivity table below shows how little the "
           "models yet tell one instrument from another)" if ens_all is not None and ens_all < TARGET_ALL_DB else "")
    lines.append("**Targets (issue #6).** GMSDI ensemble All ≥ "
                 f"{TARGET_ALL_DB:g} dB: " + (f"{_fmt(ens_all)} dB{gap}" if ens_all is not None else "not measured yet")
                 + f"; ensemble / MSDM ≥ {TARGET_MSDM_RATIO:g} (paper 0.70): "
                 + (f"{ens_all / msdm_all:.2f}" if ens_all is not None and msdm_all else "not measured yet") + ".")
    tagged = sorted(k for k in results if k.startswith("separation-") and k.removeprefix("separation-")
                    not in SEPARATION_METHODS)
    if tagged:
        lines += ["", "Variants (`--tag`):", "", "| run | bass | drums | guitar | piano | All | settings | command |",
                  "|---|---|---|---|---|---|---|---|"]
        for key in tagged:
            r = results[key]
            s = r["results"]["sisdri"]
            sets = ", ".join(f"{k}={v}" for k, v in (r.get("settings") or {}).items() if v is not None)
            lines.append(f"| {key.removeprefix('separation-')} | " + " | ".join(_fmt(s.get(k)) for k in STEMS)
                         + f" | {_fmt(s.get('All'))} | {sets} | `{r.get('command')}` |")
    return lines + [""]


def ensemble_section(results: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["## The ensemble choice (validation split)", ""]
    r = results.get("ensemble-choice")
    if r is None:
        return lines + [f"{_missing('gmsdi', status).capitalize()}: `python -m gmsdi.eval ensemble-choice` writes "
                        "assets/ensemble.json; until then `GMSDIPipeline.ensemble` uses the paper's choice "
                        "(separator for drums, extractor otherwise).", ""]
    sep = r["results"]["gmsdi-separator"]["sisdri"]
    ext = r["results"]["gmsdi-extractor"]["sisdri"]
    lines += ["| stem | separator | extractor | chosen |", "|---|---|---|---|"]
    for s in STEMS:
        lines.append(f"| {s} | {_fmt(sep.get(s))} | {_fmt(ext.get(s))} | {r['choice'].get(s, '–')} |")
    return lines + ["", f"SI-SDRi in dB. {_provenance(r, status)}; written to {r.get('ensemble_file')}.", ""]


def _fad_row(label: str, r: Mapping[str, Any]) -> str:
    """A row of the generation FAD table from a `fad-generation-*` record."""
    res = r["results"]
    return (f"| {label} | {_fmt(res['fad'], 3)} | {_fmt(res.get('mixture_consistency'), 4)} | "
            f"{r['clips']} × {r['seconds']:g} | {_short((r.get('model') or {}).get('checkpoint_sha256'))} |")


def fad_section(results: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["## Generation: FAD and sub-FAD", "",
             "FAD (lower is better) on musicnn (MagnaTagATune) `penultimate` embeddings of 3 s patches "
             "(docs/musicnn_port.md) against the real four-stem test mixtures. sub-FAD: for each real test "
             "clip the given stems are kept and the named stem is generated; the mix of given + generated stems "
             "against the real mixtures. FAD is biased upwards for small sets: compare only rows with the "
             "same number of clips.", "",
             "| model | FAD (4 stems generated) | mixture consistency ‖y − Σx‖/‖y‖ | clips × s | checkpoint |",
             "|---|---|---|---|---|"]
    notes = []
    for name, spec in MODELS.items():
        r = results.get(f"fad-generation-{name}")
        if r is None:
            lines.append(f"| {spec.label} | {_missing(name, status)} | | | |")
            continue
        lines.append(_fad_row(spec.label, r))
        notes.append(f"- {spec.label}: {_provenance(r, status)}.")
    # Candidates: GMSDI runs on another checkpoint or setting, written with --tag (fad-generation-gmsdi-<tag>).
    own = {f"fad-generation-{name}" for name in MODELS}
    for key in sorted(k for k in results if k.startswith("fad-generation-gmsdi-") and k not in own):
        r, tag = results[key], key.removeprefix("fad-generation-gmsdi-")
        model = r.get("model") or {}
        step = f", step {model['step']}" if model.get("step") is not None else ""
        label = f"GMSDI candidate `{tag}` ({model.get('run') or model.get('checkpoint') or '?'}{step})"
        if model.get("checkpoint_sha256") and model["checkpoint_sha256"] == status.get("gmsdi", {}).get("sha256"):
            label += ", **the bundled checkpoint**"
        lines.append(_fad_row(label, r))
        negatives = r.get("negative_prompts")
        said = f"; negative prompts {', '.join(repr(n) for n in negatives)}" if negatives else ""
        notes.append(f"- {label}: {_provenance(r, status)}{said}.")
    ref = results.get("fad-reference")
    if ref is not None:
        sets = ref["results"]["sets"]
        for key, label in (("mix", f"*reference: real {ref['reference_split']} mixtures*"),
                           ("noise:mix", "*reference: white noise at their RMS*")):
            if key in sets:
                row = sets[key]
                lines.append(f"| {label} | {_fmt(row['fad'], 3)} | | {row['clips']} × {ref['seconds']:g} | |")
        notes.append(_reference_note(ref))
    lines += ["", *notes, ""]
    subsets: list[str] = []
    for name in MODELS:
        r = results.get(f"fad-accompaniment-{name}")
        if r is not None:
            subsets += [s for s in r["results"]["subsets"] if s not in subsets]
    subsets = subsets or list(STEMS)
    lines += ["sub-FAD, by generated stem(s) (the others given):", "",
              "| model | " + " | ".join(subsets) + " |", "|---|" + "---|" * len(subsets)]
    notes = []
    for name, spec in MODELS.items():
        r = results.get(f"fad-accompaniment-{name}")
        if r is None:
            lines.append(f"| {spec.label} | {_missing(name, status)} |" + " |" * (len(subsets) - 1))
            continue
        rows = r["results"]["subsets"]
        lines.append(f"| {spec.label} | " + " | ".join(
            f"{_fmt(rows[s]['sub_fad'], 3)} ({rows[s]['clips']})" if s in rows else "–" for s in subsets) + " |")
        notes.append(f"- {spec.label}: {_provenance(r, status)}.")
    return lines + ["", "(clips in parentheses: real test clips in which at least one given stem plays; the given "
                    "stems are whatever the clip holds.)", "", *notes, ""]


def _reference_note(ref: Mapping[str, Any]) -> str:
    return (f"- References: {ref['clips']} clips of {ref['seconds']:g} s from the {ref['reference_split']} split "
            f"(held out from the real statistics), `{ref['command']}` ({ref['date']}).")


def ablation_section(results: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["## Negative-prompting ablation: single-source FAD", "",
             "Stems generated from one instrument's prompt against the real test stems of that instrument "
             "(clips where it plays), for each guidance setting. GMSDI's claim: a mixture-trained model "
             "parameterises single sources well when negative prompting is used.", ""]
    variants = list(SINGLE_SOURCE_VARIANTS)
    for name, spec in MODELS.items():
        if spec.kind != "gmsdi":
            continue
        r = results.get(f"fad-single-source-{name}")
        lines += [f"**{spec.label}**", ""]
        if r is None:
            lines += [f"{_missing(name, status).capitalize()}.", ""]
            continue
        rows = r["results"]["fad"]
        used = [v for v in variants if any(v in rows[s] for s in rows)]
        lines += ["| stem | " + " | ".join(used) + " |", "|---|" + "---|" * len(used)]
        for s, vals in rows.items():
            lines.append(f"| {s} | " + " | ".join(_fmt(vals.get(v), 3) for v in used) + " |")
        means = [_nanmean([rows[s].get(v, math.nan) for s in rows]) for v in used]
        lines.append("| mean | " + " | ".join(_fmt(m, 3) for m in means) + " |")
        lines += ["", f"{r['clips']} clips of {r['seconds']:g} s per cell; {_provenance(r, status)}.", ""]
    ref = results.get("fad-reference")
    if ref is not None:
        sets = ref["results"]["sets"]
        stems = [s for s in STEMS if s in sets]
        lines += ["**References** (what a perfect generator and one that learned only the level score with the same "
                  "number of clips):", "",
                  "| stem | real " + ref["reference_split"] + " stems | white noise at their RMS |", "|---|---|---|"]
        for s in stems:
            noise = sets.get(f"noise:{s}", {}).get("fad", math.nan)
            lines.append(f"| {s} | {_fmt(sets[s]['fad'], 3)} ({sets[s]['clips']}) | {_fmt(noise, 3)} |")
        lines += ["", _reference_note(ref).removeprefix("- "), ""]
    w1 = results.get("separation-gmsdi-separator-w1")
    full = results.get("separation-gmsdi-separator")
    if w1 is not None and full is not None:
        lines += ["Separation without guidance (w = 1) against the default (w = 2): SI-SDRi All "
                  f"{_fmt(w1['results']['sisdri']['All'])} vs {_fmt(full['results']['sisdri']['All'])} dB.", ""]
    return lines


def _plot(path: Path, draw) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = draw(plt)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep_section(results: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]], plots: Path,
                  out: Path) -> tuple[list[str], list[Path]]:
    lines = ["## γ_x / γ_y sweep", "",
             "Eq. (2) couples the stems and the mixture chain with widths γ_x, γ_y (relative: γ = g·σ). "
             "Small γ ties them tighter (mixture consistency: ‖y − Σx‖/‖y‖ of the mixture chain y and the "
             "generated stems); the FAD of the generated mixes says what it costs in quality.", ""]
    written = []
    for name, spec in MODELS.items():
        r = results.get(f"sweep-{name}")
        if r is None:
            if spec.kind == "gmsdi" and name == "gmsdi":
                lines += [f"{spec.label}: {_missing(name, status)}.", ""]
            continue
        rows = sorted(r["results"]["rows"], key=lambda row: (row["axis"], row["gamma"]))  # resumed runs append
        default = _sweep_default(r, results.get(f"fad-generation-{name}"))
        lines += [f"**{spec.label}** ({r['clips']} clips of {r['seconds']:g} s per point)", "",
                  "| varied | g | γ_x | γ_y | consistency | FAD |", "|---|---|---|---|---|---|"]
        for row in rows:
            gx, gy = (("default" if v is None else f"{v:g}") for v in (row["gamma_x"], row["gamma_y"]))
            result = ("refused: too tight for the step count | " if row.get("refused") else
                      f"{_fmt(row['consistency'], 4)} | ")
            lines.append(f"| γ_{row['axis']} | {row['gamma']:g} | {gx} | {gy} | {result}{_fmt(row['fad'], 3)} |")
        if default is not None:
            lines.append(f"| neither (the default, from the generation FAD run) | {default['gamma']:.3g} | "
                         f"{default['gamma']:.3g} | {default['gamma']:.3g} | {_fmt(default['consistency'], 4)} | "
                         f"{_fmt(default['fad'], 3)} |")

        def draw(plt, rows=rows, label=spec.label, default=default):
            fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
            for axis in sorted({row["axis"] for row in rows}):
                pts = [row for row in rows if row["axis"] == axis]
                xs = [min(row["gamma"], 1e3) for row in pts]
                axes[0].plot(xs, [row["consistency"] for row in pts], "o-", label=f"vary γ_{axis}")
                axes[1].plot(xs, [row["fad"] for row in pts], "o-", label=f"vary γ_{axis}")
            if default is not None:
                for ax, key in zip(axes, ["consistency", "fad"], strict=True):
                    ax.plot([default["gamma"]], [default[key]], "k*", markersize=10, label="default γ_x = γ_y")
            for ax, title in zip(axes, ["mixture consistency ‖y − Σx‖/‖y‖", "FAD (generated mixes)"], strict=True):
                ax.set_xscale("log")
                ax.set_xlabel("g (γ = g·σ; inf drawn at 1e3)")
                ax.set_title(title, fontsize=9)
                ax.legend(fontsize=8)
            fig.suptitle(f"{label}: γ sweep", fontsize=10)
            return fig

        p = _plot(plots / f"sweep-{name}.png", draw)
        written.append(p)
        lines += ["", f"![γ sweep]({_rel(p, out)})", "", f"{_provenance(r, status)}.", ""]
    return lines, written


def _rel(path: Path, out: Path) -> str:
    try:
        return str(path.resolve().relative_to(out.parent.resolve()))
    except ValueError:
        return str(path)


def _sweep_default(sweep: Mapping[str, Any], gen: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The sweep's reference point: the generation FAD run at the default γ (√(G+1) for G stems),
    when it used the same model, clips, seed, sampler settings, patch hop and real set."""
    if gen is None or gen.get("quick") or sweep.get("quick"):
        return None
    key = sweep.get("resume_key") or {}
    same = (gen["model"].get("checkpoint_sha256") == sweep["model"].get("checkpoint_sha256")
            and gen["clips"] == sweep["clips"] and gen["seconds"] == sweep["seconds"]
            and gen.get("seed") == sweep.get("seed") and gen["settings"] == sweep["settings"]
            and gen["embedding"].get("hop_frames") == key.get("hop_frames")
            and gen["data"].get("split") == sweep["data"].get("split")
            and gen["data"].get("tracks_used") == sweep["data"].get("tracks_used"))
    if not same:
        return None
    k = len(key.get("stems", STEMS))
    return {"gamma": math.sqrt(k + 1), "fad": gen["results"]["fad"],
            "consistency": gen["results"]["mixture_consistency"]}


def steps_section(results: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]], plots: Path,
                  out: Path) -> tuple[list[str], list[Path]]:
    lines = ["## Steps versus quality", "",
             "Separation SI-SDRi (All) and real-time factor (wall seconds per second of audio) against the "
             "number of sampler steps, on a subset of the test tracks. The separator has two forms "
             "(`dirac=`): MSDM's *constrained* one (one stem is the mix minus the others) and the *projected* "
             "one (all stems on the plane Σx = y). The constrained form's update is K times stiffer along the "
             "sum of the free stems, so few steps overshoot and keep the starting noise; the pipeline now "
             "refuses such step counts (a dry run on Gaussian sources, `gmsdi.inference.tasks.dirac_error`), "
             "and rows measured before that check show what they gave. Both forms make one batched network call "
             "for all chains per Euler step; real-time factors depend on what else ran on the machine at the time "
             "(see each run's date), so compare them within a curve rather than across.", ""]
    runs = {}
    for m in SEPARATION_METHODS:
        for key in sorted(k for k in results if k == f"steps-{m}" or k.startswith(f"steps-{m}-")):
            r = results[key]
            runs[key] = {**r, "label": f"{r['label']} ({r.get('dirac', 'constrained')})"}
    if not runs:
        return lines + [f"GMSDI separator: {_missing('gmsdi', status)}.", ""], []
    lines += ["| method (Dirac form) | steps | SI-SDRi All | real-time factor | windows |", "|---|---|---|---|---|"]
    for r in runs.values():
        for row in r["results"]["rows"]:
            if row.get("refused"):
                lines.append(f"| {r['label']} | {row['steps']} | refused: would not converge | | |")
                continue
            lines.append(f"| {r['label']} | {row['steps']} | {_fmt(row['sisdri']['All'])} | "
                         f"{_fmt(row['real_time_factor'])} | {row['windows']} |")

    def draw(plt):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for r in runs.values():
            rows = [x for x in r["results"]["rows"] if not x.get("refused")]
            axes[0].plot([x["steps"] for x in rows], [x["sisdri"]["All"] for x in rows], "o-", label=r["label"])
            axes[1].plot([x["steps"] for x in rows], [x["real_time_factor"] for x in rows], "o-", label=r["label"])
        for ax, title in zip(axes, ["SI-SDRi All (dB)", "real-time factor"], strict=True):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("sampler steps")
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=8)
        return fig

    p = _plot(plots / "steps.png", draw)
    lines += ["", f"![steps vs quality]({_rel(p, out)})", ""]
    lines += [f"- {r['label']}: {_provenance(r, status)}." for r in runs.values()]
    return lines + [""], [p]


def speed_section(results: Mapping[str, Any]) -> list[str]:
    lines = ["## Speed", "", "Inference (`python benchmarks/speed.py`, 4 s of audio, default settings; "
             "benchmarks/results/):", "",
             "| file | device, threads | model | window (samples) | task | sampler, steps | wall (s) | RTF |",
             "|---|---|---|---|---|---|---|---|"]
    found = False
    for path in sorted((REPO_ROOT / "benchmarks" / "results").glob("speed*.json")):
        try:
            entries = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        for e in entries if isinstance(entries, list) else [entries]:
            for t in e.get("tasks", []):
                found = True
                lines.append(f"| {path.name} | {e.get('device')}, {e.get('threads')} | {e.get('model')} | "
                             f"{e.get('window_samples')} | {t['task']} | {t['sampler']}, {t['steps']} | "
                             f"{_fmt(t['wall_s'], 1)} | {_fmt(t['rtf'])} |")
    if not found:
        lines.append("| not measured yet | | | | | | | |")
    lines += ["", "Separation during the evaluation (wall seconds per second of audio, all chunks of the run):", "",
              "| method | audio (s) | wall (s) | RTF | threads | CPU |", "|---|---|---|---|---|---|"]
    any_sep = False
    for name, spec in SEPARATION_METHODS.items():
        r = results.get(f"separation-{name}")
        if r is None:
            continue
        any_sep = True
        res = r["results"]
        lines.append(f"| {spec.label} | {res['seconds']:.0f} | {res['wall_seconds']:.0f} | "
                     f"{_fmt(res['real_time_factor'])} | {r.get('threads')} | {r.get('cpu') or 'not recorded'} |")
    if not any_sep:
        lines.append("| not measured yet | | | | | |")
    return lines + [""]


def sensitivity_section(results: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Prompt sensitivity per model and σ: the first sign that a model can stand for one instrument."""
    lines = ["## Prompt sensitivity", "",
             "On isolated test stems (one instrument each, the same stems and noise for every model), the denoising "
             "error under a wrong instrument's prompt ÷ under the stem's own prompt, per noise level σ "
             "(`gmsdi.eval.sensitivity`). 1 means the prompt does not matter; everything GMSDI does with one model "
             "per prompt needs it well above 1.", ""]
    rows = [(name, spec, results.get(f"sensitivity-{name}")) for name, spec in MODELS.items() if spec.kind == "gmsdi"]
    sigmas = next((list(r["results"]) for _, _, r in rows if r is not None), None)
    if sigmas is None:
        return lines + ["Not measured yet (`python -m gmsdi.eval sensitivity`).", ""]
    lines += ["| model | " + " | ".join(f"σ = {float(x):g}" for x in sigmas) + " | null ÷ own, σ = 1 |",
              "|---" * (len(sigmas) + 2) + "|"]
    for name, spec, r in rows:
        if r is None:
            lines.append(f"| {spec.label} | {_missing(name, status)} |" + " |" * len(sigmas))
            continue
        res = r["results"]
        top = res.get(sigmas[-1], {})
        lines.append(f"| {spec.label} | " + " | ".join(_fmt(res[x]["wrong_over_own"], 3) for x in sigmas)
                     + f" | {_fmt(top.get('null_over_own'), 3)} |")
    ref = results.get("sensitivity-wiener")
    if ref is not None:
        res = ref["results"]
        lines.append("| *reference: Wiener filter of the class's mean spectrum* | "
                     + " | ".join(_fmt(res[x]["wrong_over_own"], 3) if x in res else "–" for x in sigmas)
                     + f" | {_fmt(res.get(sigmas[-1], {}).get('null_over_own'), 3)} |")
    lines.append("")
    lines += [f"- {spec.label}: {_provenance(r, status)}; {r['items']} stems." for _, spec, r in rows if r is not None]
    if ref is not None:
        lines += [f"- Reference: {ref['reference']}: the exact denoiser if each class were a stationary Gaussian, "
                  "so what naming the instrument is worth to a model that knows only each class's average timbre. "
                  f"{_provenance(ref, status)}; {ref['items']} stems."]
    return lines + [""]


def _settings_text(settings: Mapping[str, Any]) -> str:
    given = {k: v for k, v in settings.items() if v is not None}
    return "settings " + ", ".join(f"{k} {v}" for k, v in given.items()) if given else "default settings"


def instruments_section(results: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Does a stem sound like the instrument it was asked for? The instrument probe on real isolated
    stems (its ceiling), on each model's generated stems, and on named audio files (the examples)."""
    lines = ["## Instrument identity: does a stem sound like its prompt?", "",
             "An instrument classifier (`gmsdi.eval.instruments`: log-mel conv net, trained on isolated stems of the "
             "training split) names the instrument of a clip: the mean softmax over its non-silent 2.048 s windows. "
             "A stem counts as correct when the probe's top class is the instrument its prompt named.", ""]
    probe = results.get("instruments-probe")
    if probe is None:
        return lines + ["Not measured yet (`python -m gmsdi.eval instruments --train`).", ""]
    test = probe["results"]["test"]
    names = list(test["per_class"])
    lines += [f"**The probe on real isolated stems** ({sum(v['n'] for v in test['per_class'].values())} random "
              f"2.048 s crops of the {probe['data']['split']} split, one class each): accuracy "
              f"**{_fmt(test['accuracy'], 3)}**, balanced {_fmt(test['balanced_accuracy'], 3)}.", "",
              "| " + " | ".join(names) + " |", "|---" * len(names) + "|",
              "| " + " | ".join(_fmt(test["per_class"][c]["recall"], 3) for c in names) + " |", "",
              f"`{probe['command']}` — probe {probe['probe']} (sha256 {_short(probe['probe_sha256'])}), "
              f"{probe['config']['crops']} training crops, {probe['config']['steps']} steps, "
              f"{probe['results']['wall_seconds']:.0f} s.", ""]
    gen = [(k, r) for k, r in sorted(results.items()) if k.startswith("instruments-") and "model" in r]
    if gen:
        lines += ["**Generated stems** (four-stem generation, Eq. 2; negative prompts the other stems' prompts "
                  "unless a row names its own, '–' keeping that default, '∅' none): per stem the share the probe "
                  "names as its prompt (chance ≈ 1/9) and, in brackets, what it most often sounds like otherwise; "
                  "then all stems together, and the mean probability of the named instrument.", "",
                  "| model | checkpoint | guidance | prompts | per stem | **all** | mean p(named) | songs |",
                  "|---|---|---|---|---|---|---|---|"]

        def order(item):
            m, g = item[1].get("model") or {}, item[1]["settings"].get("guidance")
            return (m.get("model", ""), Path(m.get("checkpoint") or "").name, item[1].get("stems") or list(STEMS),
                    item[1].get("prompts") or [], [n or "" for n in item[1].get("negative_prompts") or []],
                    2.0 if g is None else g)

        gen.sort(key=order)
        for _, r in gen:
            res, m = r["results"], r.get("model") or {}
            p_named = _nanmean([c["p_named"] for c in res["clips"] if c["p_named"] is not None])
            path = Path(m.get("checkpoint") or "")
            ck = (f"{path.name if path.parent.name == 'assets' else '/'.join(path.parts[-3:])} "
                  f"({_short(m.get('checkpoint_sha256'))})" if m.get("checkpoint") else "built in code")
            g, seed = r["settings"].get("guidance"), int(r.get("seed") or 0)
            classes = [c.replace("_", " ") for c in r.get("stems", STEMS)]
            prompts = ", ".join(r.get("prompts") or classes)
            if r.get("negative_prompts"):
                prompts += "; negative " + ", ".join("–" if n is None else "∅" if not n else f"“{n}”"
                                                     for n in r["negative_prompts"])
            lines.append(f"| {r['label']} | {ck} | {'default' if g is None else f'{g:g}'} | {prompts} | "
                         f"{_per_stem(res)} | **{_fmt(res['accuracy'], 2)}** | {_fmt(p_named, 2)} | "
                         f"{r['clips']} × {r['seconds']:g} s, seeds {seed}–{seed + r['clips'] - 1} |")
        lines.append("")
        lines += [f"- {r['label']}{' (' + r['tag'].lstrip('-') + ')' if r.get('tag') else ''}: "
                  f"{_provenance(r, status)}; {_settings_text(r['settings'])}." for _, r in gen]
        lines.append("")
    for key, r in sorted(results.items()):
        if not key.startswith("instruments-files"):
            continue
        lines += [f"**Audio files** (`{r['command']}`):", "", "| file | named | sounds like | p(named) |",
                  "|---|---|---|---|"]
        for c in r["results"]["clips"]:
            lines.append(f"| {c.get('file', '')} | {c['named']} | {c['predicted'] or 'silent'} | "
                         f"{_fmt(c['p_named'], 2)} |")
        lines += ["", f"{_fmt(r['results']['accuracy'], 2)} of the non-silent files sound like their named "
                  "instrument.", ""]
    return lines


def contrastive_section(results: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Issue #8: the contrastive encoder's retrieval and presence figures, and the no-tag model beside
    the tag-trained one (its separation and FAD rows are in the tables above)."""
    lines = ["## Contrastive conditioning: training with no tags", "",
             "A GMSDI model trained on mixtures with **no tags**, conditioned on z = E_contr(y), the embedding of "
             "the mixture crop by our contrastive text–audio encoder (`gmsdi.text.contrastive`, trained by "
             "`train/train_contrastive.py`); at inference the encoder's text branch embeds each stem's prompt. "
             "Its separation rows (\"GMSDI no tags\") and FAD rows (\"GMSDI, no tags\") stand in the tables above "
             "beside the tag-trained model's.", ""]
    r = results.get("retrieval")
    if r is None:
        return lines + ["The contrastive encoder: not evaluated yet (`python -m gmsdi.eval retrieval`).", ""]
    rec, pres = r["retrieval"], r["presence"]
    lines += [f"The encoder on {rec['crops']} random 2.048 s crops of the {r['split']} split ({rec['texts']} distinct "
              "instrument sets); a text→audio hit is a crop with exactly the queried instrument set, an audio→text "
              "hit its own set's class-level prompt among all distinct sets (`gmsdi.eval.retrieval`).", "",
              "| | recall@1 | recall@5 |", "|---|---|---|",
              f"| text → audio | {_fmt(rec['text_to_audio_r@1'], 3)} | {_fmt(rec['text_to_audio_r@5'], 3)} |",
              f"| audio → text | {_fmt(rec['audio_to_text_r@1'], 3)} | {_fmt(rec['audio_to_text_r@5'], 3)} |", "",
              "Zero-shot instrument presence: the cosine similarity of a crop to the class's prompt "
              f"(\"bass\"); ROC AUC, and accuracy at a per-class threshold fitted on the {r['fit_split']} split.", "",
              "| class | prevalence | AUC | accuracy | balanced accuracy |", "|---|---|---|---|---|"]
    for name, m in pres["per_class"].items():
        lines.append(f"| {name} | {_fmt(m['prevalence'])} | {_fmt(m['auc'], 3)} | {_fmt(m['accuracy'], 3)} | "
                     f"{_fmt(m['balanced_accuracy'], 3)} |")
    mean = pres["mean"]
    lines += [f"| **mean** | | {_fmt(mean['auc'], 3)} | {_fmt(mean['accuracy'], 3)} | "
              f"{_fmt(mean['balanced_accuracy'], 3)} |", "",
              f"`{r['command']}` — encoder `{r.get('encoder')}` (sha256 {_short(r.get('encoder_sha256'))}), "
              f"{r['data']['root']}.", ""]
    return lines


def look_section(look_dir: Path, out: Path) -> list[str]:
    """The first gate (issue #17): spectrograms of generated beside real stems, and the structure
    measure of real stems, class-coloured noise and each model's stems (`benchmarks/look.py`)."""
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(look_dir.glob("*.json"))} if look_dir.is_dir() else {}
    lines = ["## Look and structure: generated stems beside real ones", "",
             "Eight four-stem songs (bass, drums, guitar, piano; seeds 0-7, 4 s) at the app's defaults, beside eight "
             "real test stems of each class. The structure measure (`gmsdi.eval.structure.tf_contrast`) is the mean "
             "dB by which the loudest 5 % of time-frequency bins stand above the median of their neighbourhood in "
             "frequency or in time: partials and hits stand out, stationary noise of any colour does not. This gate "
             "comes first: no figure below overrides what these pictures show.", ""]
    if not runs:
        return [*lines, "Not measured yet: `python benchmarks/look.py`.", ""]
    classes = list(next(iter(runs.values()))["tf_contrast"])
    first = next(iter(runs.values()))["tf_contrast"]
    lines += ["| clips | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes),
              "| real test stems | " + " | ".join(_fmt(first[c]["real"]["mean"]) for c in classes) + " |",
              "| noise coloured to the class | " + " | ".join(_fmt(first[c]["coloured_noise"]["mean"])
                                                         for c in classes) + " |"]
    for tag, r in runs.items():
        lines.append(f"| generated: {tag} (`{r['checkpoint']['path']}`, sha256 {_short(r['checkpoint']['sha256'])}) | "
                     + " | ".join(_fmt(r["tf_contrast"][c]["generated"]["mean"]) for c in classes) + " |")
    lines.append("")
    for tag, r in runs.items():
        picture = REPO_ROOT / r["picture"]
        shown = [f"![{tag}]({_rel(picture, out)})", ""] if picture.is_file() else []  # some runs keep it local
        lines += [*shown, f"*{tag}{'' if shown else ' (picture not committed)'}: `{r['command']}`*", ""]
    return lines


def fad_degrade_section(path: Path) -> list[str]:
    """What the FAD gate penalises: real clips degraded in one known way each (`benchmarks/fad_degrade.py`)."""
    lines = ["## What FAD penalises: real clips, degraded", "",
             "The FAD reference's real validation clips with one defect each, scored against the same real test "
             "statistics: a noise floor (white, or coloured like the clip, at a level below its RMS), random STFT "
             "phases with the exact magnitudes, and each bin's power averaged over 9 or 31 frames (144 or 496 ms: "
             "onsets and note ends blurred). A generated set scores like the defect it shares.", ""]
    if not path.is_file():
        return [*lines, "Not measured yet: `python benchmarks/fad_degrade.py`.", ""]
    r = json.loads(path.read_text())
    cols = list(next(iter(r["sets"].values())))
    lines += ["| set | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(_fmt(row[c]) for c in cols) + " |" for name, row in r["sets"].items()]
    return [*lines, "", f"{r['clips']} clips of {r['seconds']:g} s per set; `{r['command'].strip()}`.", ""]


def models_section(status: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["## Models", "", "| model | trained on | config | checkpoint | sha256 |", "|---|---|---|---|---|"]
    for name, spec in MODELS.items():
        st = status[name]
        ck = st["path"] if st["exists"] else f"{st['path']} — not trained yet"
        lines.append(f"| {spec.label} | {spec.data} | {spec.train_config} | {ck} | {_short(st['sha256'])} |")
    return lines + ["", "All train on the same set (SynthSlakh train split, 1150 tracks). GMSDI is the `bands` "
                    "network (band-split STFT, 2-D U-Net, 17.0 M parameters, 1.024 s crops, batch 16; train/RUNS.md); "
                    "the floor "
                    "is a Wiener filter of spectra from the prompt. The baselines and the no-tag model are "
                    "waveform U-Nets of sessions 1-7 (4.8-5.1 M parameters, 2.048 s crops, batch 16, 6000 steps), "
                    "no longer shipped: their rows below are history until they are retrained on the new design.",
                    ""]


def write_report(results_dir: str | Path, out: str | Path, plots: str | Path, quick: bool = False) -> list[Path]:
    """Writes the report `out` (markdown) and its plots into `plots`; returns the files written."""
    results_dir, out, plots = Path(results_dir), Path(out), Path(plots)
    results = _load_results(results_dir, quick)
    status = _model_status()
    written: list[Path] = []
    lines = ["# Results", "",
             "Generated by `python -m gmsdi.eval report` from the result files in "
             f"`{results_dir}` — do not edit by hand. The protocols are those of the paper "
             "(METHOD.md §4); the commands that made every number are under each table and in "
             "[How to reproduce](#how-to-reproduce).", ""]
    if quick:
        lines += ["> **Quick mode.** Tiny untrained models built in code, a couple of windows, few steps: this "
                  "checks that the evaluation runs. None of these numbers is a result.", ""]
    lines += models_section(status)
    if not quick:
        lines += look_section(REPO_ROOT / "benchmarks" / "results" / "look", out)
    lines += separation_section(results, status)
    lines += ensemble_section(results, status)
    lines += fad_section(results, status)
    if not quick:
        lines += fad_degrade_section(REPO_ROOT / "benchmarks" / "results" / "fad_degrade.json")
    lines += ablation_section(results, status)
    section, files = sweep_section(results, status, plots, out)
    lines += section
    written += files
    section, files = steps_section(results, status, plots, out)
    lines += section
    written += files
    lines += sensitivity_section(results, status)
    lines += instruments_section(results, status)
    lines += contrastive_section(results, status)
    lines += speed_section(results)
    lines += ["## How to reproduce", "", REPRODUCE.rstrip(), "", *costs_table(),
              "Every evaluation command takes `--tracks N` / `--clips N` for a cheaper subset, `--device cuda`, "
              "and `--quick` for a smoke test; `python -m gmsdi.eval COMMAND --help` lists the options. "
              "Separation runs cache per-track scores under the results folder and resume after an interruption.",
              ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return [out, *written]


__all__ = ["SEPARATION_HEADER", "write_report"]
