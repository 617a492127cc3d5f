"""The Gradio interface: `build_ui(pipeline) -> gr.Blocks`, with no module-level state.

Layout. "Generate & accompany": stem slots (prompt, negative prompt, lock, audio,
spectrogram) shown or hidden up to `AppConfig.max_stems`; "Generate all" makes every stem anew,
"Regenerate unlocked" keeps the locked stems (generated or uploaded) and generates the rest to
fit them. "Separate / extract": a mix in, named stems out. Every output is a file (true relative
levels) with a spectrogram on one dB scale, plus a zip (wav + flac + settings.json).

API. The UI's own events are private; four named endpoints with flat, typed inputs serve
`gradio_client` (see `API_SNIPPET`): `/generate`, `/accompany`, `/separate`, `/extract`. Each
returns (stem files, mix file, zip file, settings dict).

All model runs share one queue slot group ("model", `AppConfig.concurrency` at once); UI-only
events (adding a stem, loading a preset, Stop) bypass the queue so they answer at once.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gradio as gr

from gmsdi.app.handlers import (
    DEFAULT_METHOD,
    DEFAULT_PROMPT_SET,
    EXAMPLES_DIR,
    METHODS,
    PROMPT_SETS,
    AppConfig,
    AppTasks,
    Output,
    app_error,
    file_path,
    new_run,
    parse_gamma,
    request_cancel,
    split_negatives,
    split_prompts,
)
from gmsdi.inference.constraints import DIRAC_MODES
from gmsdi.pipeline import CHURN_RANGE, GENERATION, GUIDANCE_RANGE, SEPARATION, GMSDIPipeline
from gmsdi.sampling import SAMPLERS

API_SNIPPET = '''from gradio_client import Client, handle_file

client = Client("http://127.0.0.1:7860/")
# stems, mix, zip and settings come back as local file paths and a dict
stems, mix, zip_path, settings = client.predict(
    prompts="bass, drums, piano", negative_prompts="", seconds=4, steps=32, guidance=3.0,
    gamma_x=None, gamma_y=None, seed=0, api_name="/generate")
stems, mix, zip_path, settings = client.predict(
    locked=[handle_file(stems[0])], locked_prompts="bass", prompts="drums, piano", negative_prompts="",
    steps=32, guidance=3.0, gamma_x=None, gamma_y=None, seed=1, api_name="/accompany")
stems, mix, zip_path, settings = client.predict(
    mix=handle_file("song.wav"), prompts="bass, drums, guitar, piano", method="ensemble",
    steps=64, guidance=2.0, seed=0, dirac="constrained", api_name="/separate")  # or "separator", "projected"
stems, mix, zip_path, settings = client.predict(
    mix=handle_file("song.wav"), prompt="bass", rest_prompt="", steps=64, guidance=2.0, seed=0,
    api_name="/extract")'''

CSS = """
.stem-slot {padding: 6px !important;}
/* a spectrogram spans the width of the waveform above it, so their time axes line up */
.spectrogram .image-container > button {width: 100% !important; padding: 0 16px 0 12px !important;}
.spectrogram .image-frame {width: 100% !important; height: 100% !important;}
.spectrogram img {image-rendering: auto; object-fit: fill !important; max-width: none !important;
                  width: 100% !important; height: 100% !important;}
"""

# Gradio marks pictures loading="lazy", so a spectrogram below the fold stayed blank until scrolled
# to; spectrograms load at once.
HEAD = """<script>
new MutationObserver(() => {
  for (const img of document.querySelectorAll(".spectrogram img[loading='lazy']")) img.loading = "eager";
}).observe(document.documentElement, {childList: true, subtree: true, attributes: true, attributeFilter: ["src"]});
</script>
"""

SLOT_FIELDS = ("prompt", "negative", "lock", "audio", "image")
EMPTY_SLOT: dict[str, Any] = {"prompt": "", "negative": "", "lock": False, "audio": None, "image": None}


def _progress(progress: gr.Progress):
    return lambda fraction, what: progress(fraction, desc=what)


def _model_banner(pipeline: GMSDIPipeline, config: AppConfig) -> str:
    limits = (f"Limits: {config.max_stems} stems, {config.max_seconds:g} s of audio, uploads up to "
              f"{config.max_file_size}; {config.concurrency} run at a time, others wait in a queue.")
    if pipeline.checkpoint is None:
        return ("> ⚠️ **Untrained tiny model, built in code (`--tiny`)**: it makes noise, not music. Use it to try "
                "the interface and the API; run `python app.py` without `--tiny` for the trained model.\n>\n"
                f"> Device: `{pipeline.device}`. {limits}")
    return f"Model: `{Path(pipeline.checkpoint).name}` on `{pipeline.device}`. {limits}"


def _api_number(value: float | None, label: str, whole: bool = False) -> gr.Number:
    """A number input of the named endpoints: a wrong type gets a sentence, not a component fault."""
    component = gr.Number(value, label=label, precision=0 if whole else None)
    preprocess = component.preprocess

    def checked(payload: Any) -> float | None:
        if payload is None or payload == "":
            return None
        number = payload
        if isinstance(payload, str):
            try:
                number = float(payload)
            except ValueError:
                number = None
        if (isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number)
                or (whole and number != int(number))):
            what = "a whole number" if whole else "a number"
            raise app_error(f"{label} must be {what} or empty for the default, got {payload!r}.")
        return preprocess(number)

    component.preprocess = checked  # an instance attribute: a subclass would make Gradio write a .pyi here
    return component


def _api_text(value: str | None, label: str) -> gr.Textbox:
    """A text input of the named endpoints: anything but text gets a sentence."""
    component = gr.Textbox(value, label=label)
    preprocess = component.preprocess

    def checked(payload: Any) -> str | None:
        if payload is not None and not isinstance(payload, str):
            raise app_error(f"{label} must be text, got {payload!r}.")
        return preprocess(payload)

    component.preprocess = checked
    return component


def _api_file(label: str, multiple: bool = False) -> gr.File:
    """A file input of the named endpoints: anything but an uploaded file gets a sentence."""
    component = gr.File(file_count="multiple" if multiple else "single", label=label)
    preprocess = component.preprocess

    def checked(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except Exception:
            raise app_error(f"{label} must be an audio file sent with gradio_client.handle_file(path), "
                            f"got {str(payload)[:200]!r}.") from None

    component.preprocess = checked
    return component


def _spectrogram(**kwargs: Any) -> gr.Image:
    """An output picture for `spectrogram_png` files."""
    return gr.Image(type="filepath", interactive=False, height=110, show_label=False,
                    buttons=["download", "fullscreen"], elem_classes="spectrogram", **kwargs)


def _separate_label(method: str) -> str:
    """The Separate tab's button text for a method."""
    return {"separator": "Separate", "extractor": "Extract"}.get(method, f"Separate ({method})")


def _load_examples(examples_dir: Path) -> list[list[Any]]:
    """[[mix file, prompts text, method], ...] from `examples.json` (empty if there is none).

    Each item: {"file", "stems" (what plays), optional "prompts" (what to ask for; default the
    stems) and "method" (default "ensemble")}.
    """
    index = examples_dir / "examples.json"
    if not index.is_file():
        return []
    rows = []
    for item in json.loads(index.read_text()):
        f = examples_dir / item["file"]
        if f.is_file():
            rows.append([str(f), ", ".join(item.get("prompts", item["stems"])), item.get("method", DEFAULT_METHOD)])
    return rows


def build_ui(pipeline: GMSDIPipeline, config: AppConfig | None = None) -> gr.Blocks:
    """The app over `pipeline`, queued (`config.concurrency` runs at once, `config.queue_size` waiting).

    Launch it with `demo.launch(**launch_options(config))` so the upload limit and the examples
    folder apply.
    """
    config = config or AppConfig()
    tasks = AppTasks(pipeline, config)
    m = config.max_stems
    n0 = min(m, len(PROMPT_SETS[DEFAULT_PROMPT_SET]))
    model_run = {"concurrency_id": "model", "concurrency_limit": config.concurrency}

    with gr.Blocks(title="GMSDI: text-conditioned stems", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# GMSDI: generate, accompany and separate music stems from text\n"
                    "One diffusion model trained on mixtures (Postolache et al., ICASSP 2024). Name the stems; "
                    "keep the ones you like and regenerate the rest; or pull stems out of a mix.")
        gr.Markdown(_model_banner(pipeline, config), elem_id="model-banner")

        # ---------------------------------------------------------------- generate & accompany
        with gr.Tab("Generate & accompany", id="generate"):
            cancel_gen = gr.State({})
            n_slots = gr.State(n0)
            with gr.Row():
                preset = gr.Dropdown(list(PROMPT_SETS), value=DEFAULT_PROMPT_SET, allow_custom_value=True,
                                     label="Preset (or type stems, comma-separated, and press Enter)", scale=4)
                add = gr.Button("+ Add stem", size="sm", scale=1)
            with gr.Row():
                seconds = gr.Slider(0.5, config.max_seconds, value=config.seconds, step=0.5,
                                    label="Duration (s)", info="Regenerate unlocked: the locked stems' length")
                gen_steps = gr.Slider(1, config.max_steps, value=config.generate_steps, step=1, label="Steps")
                gen_guidance = gr.Slider(*GUIDANCE_RANGE, value=config.generate_guidance, step=0.1,
                                         label="Negative-prompt strength (guidance)",
                                         info="how hard each stem steers away from its negative prompt; 1 = off")
            with gr.Row():
                # one γ_x for all stems: Eq. (2) couples every stem to the mixture with the same width
                gamma_x = gr.Textbox(label="Stems follow the mix (γ_x)", placeholder="default √(G+1)",
                                     max_lines=1, info="how loosely the stems are pulled to add up to the mix; "
                                     "smaller = tighter")
                gamma_y = gr.Textbox(label="Mix follows the stems (γ_y)", placeholder="default √(G+1)",
                                     max_lines=1, info="how loosely the mix is pulled toward the sum of the "
                                     "stems; smaller = tighter")
                gen_seed = gr.Textbox(label="Seed", placeholder="empty = random", max_lines=1, elem_id="generate-seed",
                                      info="the same seed and settings give the same music")
                with gr.Accordion("Advanced", open=False):
                    gen_sampler = gr.Radio(sorted(SAMPLERS), value=GENERATION.sampler, label="Sampler")
                    gen_churn = gr.Slider(*CHURN_RANGE, value=GENERATION.s_churn, step=1, label="Churn (S_churn)")
                    gen_coupling = gr.Slider(0.0, 1.0, value=GENERATION.coupling_sigma_min, step=0.01,
                                             label="Tie stems to the mix down to σ",
                                             info="below this noise level each stem finishes on its own: cleaner "
                                             "stems; 0 = tied to the end, the mix exact but stems may share parts")
            with gr.Row():
                gen_btn = gr.Button("Generate all", variant="primary", elem_id="generate-btn")
                acc_btn = gr.Button("Regenerate unlocked", variant="secondary", elem_id="accompany-btn")
                gen_stop = gr.Button("Stop", variant="stop", elem_id="generate-stop")
            gen_status = gr.Markdown("", elem_id="generate-status")
            groups, slots = [], []
            for i in range(m):
                names = PROMPT_SETS[DEFAULT_PROMPT_SET]
                with gr.Group(visible=i < n0, elem_classes="stem-slot") as group:
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=3, min_width=240):
                            prompt = gr.Textbox(names[i] if i < len(names) else "", label=f"Stem {i + 1}: prompt",
                                                elem_classes="stem-prompt", max_lines=1)
                            negative = gr.Textbox(label="Negative prompt", max_lines=1,
                                                  placeholder="empty = the other stems")
                            lock = gr.Checkbox(label="Lock (keep)", min_width=80, elem_classes="stem-lock")
                            remove = gr.Button("✕ Remove", size="sm")
                        with gr.Column(scale=5, min_width=300):
                            audio = gr.Audio(type="filepath", sources=["upload"], label=f"Stem {i + 1} audio "
                                             "(upload a file here to lock it)", editable=False,
                                             buttons=["download"], elem_classes="stem-audio")
                            image = _spectrogram()
                groups.append(group)
                slots.append({"prompt": prompt, "negative": negative, "lock": lock,
                              "audio": audio, "image": image, "remove": remove})
            slot_values = [s[f] for s in slots for f in SLOT_FIELDS]

            with gr.Row():
                with gr.Column(scale=5):
                    gen_mix = gr.Audio(type="filepath", label="Mix", interactive=False, buttons=["download"],
                                       elem_classes="mix-audio")
                    gen_mix_image = _spectrogram()
                with gr.Column(scale=2):
                    gen_seed_used = gr.Textbox(label="Seed used", interactive=False, elem_id="generate-seed-used")
                    reuse = gr.Button("Reuse this seed", size="sm")
                    gen_zip = gr.File(label="All stems (wav + flac) and settings.json", interactive=False)
            with gr.Accordion("Settings used", open=False):
                gen_settings = gr.JSON(label="settings.json")
            gr.Markdown("Spectrograms: 0 Hz at the bottom to 8 kHz at the top, one colour scale for every "
                        "stem (black −80 dBFS, yellow 0 dBFS), so louder stems look brighter.")
            gr.Examples([[name, config.seconds, str(seed)] for seed, name in enumerate(PROMPT_SETS)],
                        inputs=[preset, seconds, gen_seed], label="Prompt sets")

        # ---------------------------------------------------------------- separate / extract
        with gr.Tab("Separate / extract", id="separate"):
            cancel_sep = gr.State({})
            with gr.Row():
                with gr.Column(scale=3):
                    sep_mix_in = gr.Audio(type="filepath", sources=["upload"], label="Mix (wav, flac, ogg, mp3, ...)",
                                          elem_id="separate-input")
                with gr.Column(scale=2):
                    method = gr.Radio(list(METHODS), value=DEFAULT_METHOD, label="Method",
                                      info="ensemble: per stem the better of the two below, as measured; "
                                           "separator: all stems at once, summing exactly to the mix (faster); "
                                           "extractor: one stem and the rest")
                    sep_prompts = gr.Textbox("bass, drums, guitar, piano", label="Stems in the mix (comma-separated)",
                                             elem_id="separate-prompts")
                    rest = gr.Textbox(label="What else plays (optional)", visible=False,
                                      placeholder="e.g. drums, guitar, piano; empty = anything but the stem")
            with gr.Row():
                sep_steps = gr.Slider(1, config.max_steps, value=config.separate_steps, step=1, label="Steps")
                sep_guidance = gr.Slider(*GUIDANCE_RANGE, value=config.separate_guidance, step=0.1,
                                         label="Guidance weight")
                sep_churn = gr.Slider(*CHURN_RANGE, value=SEPARATION.s_churn, step=1, label="Churn (S_churn)")
                sep_dirac = gr.Radio(list(DIRAC_MODES), value=SEPARATION.dirac, label="Separator form",
                                     info="constrained: MSDM's (one stem is the mix minus the others; needs enough "
                                          "steps); projected: no stem singled out, runs at any step count")
                sep_seed = gr.Textbox(label="Seed", placeholder="empty = random", max_lines=1)
            with gr.Row():
                sep_btn = gr.Button(_separate_label(DEFAULT_METHOD), variant="primary", elem_id="separate-btn")
                sep_stop = gr.Button("Stop", variant="stop", elem_id="separate-stop")
            sep_status = gr.Markdown("", elem_id="separate-status")
            sep_groups, sep_audio, sep_images = [], [], []
            for i in range(m):
                with gr.Group(visible=False) as group:
                    sep_audio.append(gr.Audio(type="filepath", label=f"Stem {i + 1}", interactive=False,
                                              buttons=["download"], elem_classes="stem-audio"))
                    sep_images.append(_spectrogram())
                sep_groups.append(group)
            with gr.Row():
                with gr.Column(scale=5):
                    sep_mix = gr.Audio(type="filepath", label="Mix (as the model heard it: mono, resampled)",
                                       interactive=False, buttons=["download"], elem_classes="mix-audio")
                    sep_mix_image = _spectrogram()
                with gr.Column(scale=2):
                    sep_seed_used = gr.Textbox(label="Seed used", interactive=False)
                    sep_zip = gr.File(label="All stems (wav + flac) and settings.json", interactive=False)
            with gr.Accordion("Settings used", open=False):
                sep_settings = gr.JSON(label="settings.json")
            examples = _load_examples(EXAMPLES_DIR)
            if examples:
                gr.Examples(examples, inputs=[sep_mix_in, sep_prompts, method],
                            label="Example mixes (SynthSlakh test tracks, rendered offline)")

        # ---------------------------------------------------------------- API help
        with gr.Tab("API", id="api"):
            gr.Markdown("Named endpoints for [`gradio_client`](https://www.gradio.app/guides/getting-started-with-the-"
                        "python-client): `/generate`, `/accompany`, `/separate`, `/extract`. Each returns the stem "
                        "files, the mix file, the zip and the settings.")
            gr.Code(API_SNIPPET, language="python")

        # ---------------------------------------------------------------- hidden API components
        with gr.Column(visible=False):
            api = {
                "prompts": _api_text(None, "prompts"), "negative_prompts": _api_text("", "negative_prompts"),
                "seconds": _api_number(config.seconds, "seconds"), "steps": _api_number(None, "steps", whole=True),
                "guidance": _api_number(config.generate_guidance, "guidance"),
                "separate_guidance": _api_number(config.separate_guidance, "guidance"),
                "gamma_x": _api_number(None, "gamma_x"), "gamma_y": _api_number(None, "gamma_y"),
                "seed": _api_number(None, "seed", whole=True),
                "locked": _api_file("locked", multiple=True), "locked_prompts": _api_text(None, "locked_prompts"),
                "mix": _api_file("mix"), "method": _api_text(DEFAULT_METHOD, "method"),
                "prompt": _api_text(None, "prompt"), "rest_prompt": _api_text("", "rest_prompt"),
                "dirac": _api_text(SEPARATION.dirac, "dirac"),
            }
            api_out = [gr.File(file_count="multiple", label="stems"), gr.File(label="mix"), gr.File(label="zip"),
                       gr.JSON(label="settings")]
            api_buttons = {name: gr.Button(name) for name in ("generate", "accompany", "separate", "extract")}

        # ================================================================ events
        def visibility(n: int) -> list[Any]:
            return [gr.update(visible=i < n) for i in range(m)]

        def add_slot(n: int) -> list[Any]:
            if n >= m:
                gr.Warning(f"At most {m} stems.")
                return [n, *visibility(n)]
            return [n + 1, *visibility(n + 1)]

        add.click(add_slot, [n_slots], [n_slots, *groups], queue=False, api_visibility="private")

        def remove_slot(i: int):
            def fn(n: int, *values: Any) -> list[Any]:
                if n <= 1:
                    gr.Warning("Keep at least one stem.")
                    return [gr.skip()] * (1 + m + len(values))
                k = len(SLOT_FIELDS)
                rows = [dict(zip(SLOT_FIELDS, values[j * k:(j + 1) * k], strict=True)) for j in range(m)]
                rows = rows[:i] + rows[i + 1:] + [dict(EMPTY_SLOT)]
                return [n - 1, *visibility(n - 1), *[r[f] for r in rows for f in SLOT_FIELDS]]

            return fn

        for i, s in enumerate(slots):
            s["remove"].click(remove_slot(i), [n_slots, *slot_values], [n_slots, *groups, *slot_values], queue=False,
                              api_visibility="private")
            s["audio"].upload(lambda: True, None, s["lock"], queue=False, api_visibility="private")
            s["audio"].clear(lambda: (False, None), None, [s["lock"], s["image"]], queue=False,
                             api_visibility="private")

        def load_preset(value: str | None) -> list[Any]:
            prompts = PROMPT_SETS.get(value or "") or split_prompts(value)
            if not prompts:
                return [gr.skip()] * (1 + m + len(slot_values))
            if len(prompts) > m:
                gr.Warning(f"Only the first {m} stems were kept (the limit).")
                prompts = prompts[:m]
            rows = [{**EMPTY_SLOT, "prompt": p} for p in prompts] + [dict(EMPTY_SLOT)] * (m - len(prompts))
            return [len(prompts), *visibility(len(prompts)), *[r[f] for r in rows for f in SLOT_FIELDS]]

        preset.change(load_preset, [preset], [n_slots, *groups, *slot_values], queue=False, api_visibility="private")
        reuse.click(lambda s: s, [gen_seed_used], [gen_seed], queue=False, api_visibility="private")

        gen_inputs = {n_slots, *slot_values, seconds, gen_steps, gen_guidance, gamma_x, gamma_y, gen_seed, gen_sampler,
                      gen_churn, gen_coupling, cancel_gen}
        slot_audio = [s["audio"] for s in slots]
        slot_images = [s["image"] for s in slots]
        slot_locks = [s["lock"] for s in slots]
        gen_outputs = [*slot_audio, *slot_images, *slot_locks, gen_mix, gen_mix_image, gen_zip, gen_seed_used,
                       gen_settings, gen_status]

        def active(d: dict) -> list[dict[str, Any]]:
            return [{"index": i, **{f: d[slots[i][f]] for f in SLOT_FIELDS}} for i in range(d[n_slots])]

        def common(d: dict) -> dict[str, Any]:
            return {"steps": d[gen_steps], "guidance": d[gen_guidance], "seed": d[gen_seed],
                    "sampler": d[gen_sampler], "churn": d[gen_churn], "coupling": d[gen_coupling],
                    "gamma_x": parse_gamma(d[gamma_x], "γ_x"), "gamma_y": d[gamma_y]}

        def shown(out: Output, slot_indices: list[int], fresh: list[bool]) -> dict[Any, Any]:
            """Component updates for a result whose stem j belongs to slot slot_indices[j]."""
            updates: dict[Any, Any] = {gen_mix: str(out.mix), gen_mix_image: str(out.mix_image),
                                       gen_zip: str(out.zip), gen_seed_used: str(out.seed),
                                       gen_settings: out.result.settings, gen_status: out.summary(tasks.device)}
            for j, i in enumerate(slot_indices):
                updates[slot_images[i]] = str(out.images[j])
                if fresh[j]:
                    updates[slot_audio[i]] = str(out.stems[j])
                    updates[slot_locks[i]] = False
            return updates

        def ui_generate(d: dict, progress: gr.Progress = gr.Progress()) -> dict[Any, Any]:
            rows = active(d)
            used = [r for r in rows if r["prompt"].strip()]
            if not used:
                raise app_error("Type a prompt in at least one stem slot, e.g. 'bass'.")
            out = tasks.generate([r["prompt"] for r in used], [r["negative"].strip() or None for r in used],
                                 seconds=d[seconds], **common(d),
                                 progress=_progress(progress), flag=new_run(d[cancel_gen]))
            return shown(out, [r["index"] for r in used], [True] * len(used))

        def ui_accompany(d: dict, progress: gr.Progress = gr.Progress()) -> dict[Any, Any]:
            rows = active(d)
            locked = [r for r in rows if r["lock"]]
            if not locked:
                raise app_error("Lock at least one stem first: tick 'lock' on the stems to keep, or upload audio "
                                "into a stem slot; 'Generate all' makes every stem anew.")
            for r in locked:
                if r["audio"] is None:
                    raise app_error(f"Stem {r['index'] + 1} is locked but has no audio: generate it first, upload a "
                                    "file into its slot, or untick 'lock'.")
            free = [r for r in rows if not r["lock"] and r["prompt"].strip()]
            out = tasks.accompany([(r["prompt"], r["audio"]) for r in locked], [r["prompt"] for r in free],
                                  [r["negative"].strip() or None for r in free], **common(d),
                                  progress=_progress(progress), flag=new_run(d[cancel_gen]))
            order = locked + free
            return shown(out, [r["index"] for r in order], [False] * len(locked) + [True] * len(free))

        progress_on_mix = {"show_progress_on": [gen_mix], "api_visibility": "private", **model_run}
        gen_event = gen_btn.click(ui_generate, gen_inputs, gen_outputs, **progress_on_mix)
        acc_event = acc_btn.click(ui_accompany, gen_inputs, gen_outputs, **progress_on_mix)
        gen_stop.click(request_cancel, [cancel_gen], None, cancels=[gen_event, acc_event], queue=False,
                       api_visibility="private")

        def method_changed(value: str) -> list[Any]:
            extract = value == "extractor"
            label = "Stem to extract (one name)" if extract else "Stems in the mix (comma-separated)"
            return [gr.update(label=label), gr.update(visible=extract), gr.update(value=_separate_label(value))]

        method.change(method_changed, [method], [sep_prompts, rest, sep_btn], queue=False, api_visibility="private")

        def ui_separate(mix: Any, prompts: str, how: str, rest_prompt: str, steps: float, guidance: float,
                        churn: float, dirac: str, seed: str, token: dict,
                        progress: gr.Progress = gr.Progress()) -> list[Any]:
            out = tasks.separate(mix, prompts, how, rest_prompt, steps, guidance, seed, churn,
                                 progress=_progress(progress), flag=new_run(token), dirac=dirac)
            k = len(out.names)
            return [*[gr.update(visible=i < k) for i in range(m)],
                    *[gr.update(value=str(out.stems[i]), label=out.names[i]) if i < k else None for i in range(m)],
                    *[str(out.images[i]) if i < k else None for i in range(m)],
                    str(out.mix), str(out.mix_image), str(out.zip), str(out.seed), out.result.settings,
                    out.summary(tasks.device)]

        sep_event = sep_btn.click(
            ui_separate, [sep_mix_in, sep_prompts, method, rest, sep_steps, sep_guidance, sep_churn, sep_dirac,
                          sep_seed, cancel_sep],
            [*sep_groups, *sep_audio, *sep_images, sep_mix, sep_mix_image, sep_zip, sep_seed_used, sep_settings,
             sep_status], api_visibility="private", show_progress_on=[sep_mix], **model_run)
        sep_stop.click(request_cancel, [cancel_sep], None, cancels=[sep_event], queue=False, api_visibility="private")

        # ---------------------------------------------------------------- the named API endpoints
        def api_result(out: Output) -> tuple[list[str], str, str, dict]:
            return [str(p) for p in out.stems], str(out.mix), str(out.zip), out.result.settings

        def generate(prompts: str, negative_prompts: str = "", seconds: float = config.seconds,
                     steps: float | None = None, guidance: float = config.generate_guidance,
                     gamma_x: float | None = None, gamma_y: float | None = None, seed: float | None = None,
                     progress: gr.Progress = gr.Progress()):
            """Generates one stem per prompt ("bass, drums, piano"); negative_prompts: one per line, empty = the
            other stems. Returns (stem files, mix file, zip, settings)."""
            names = split_prompts(prompts)
            return api_result(tasks.generate(names, split_negatives(negative_prompts, len(names)),
                                             parse_gamma(gamma_x, "gamma_x"), gamma_y, seconds, steps, guidance, seed,
                                             progress=_progress(progress)))

        def accompany(locked: list | None, locked_prompts: str, prompts: str, negative_prompts: str = "",
                      steps: float | None = None, guidance: float = config.generate_guidance,
                      gamma_x: float | None = None, gamma_y: float | None = None, seed: float | None = None,
                      progress: gr.Progress = gr.Progress()):
            """Generates `prompts` to fit the locked stems: `locked` audio files named, in order, by
            `locked_prompts` ("bass, drums"). Returns (stem files: locked then generated, mix, zip, settings)."""
            files = [file_path(f) for f in (locked or [])]
            names = split_prompts(locked_prompts)
            if len(files) != len(names):
                raise app_error(f"Give one name in locked_prompts for each locked file ({len(files)} files, "
                                f"{len(names)} names), e.g. locked_prompts='bass, drums'.")
            new = split_prompts(prompts)
            return api_result(tasks.accompany(list(zip(names, files, strict=True)), new,
                                              split_negatives(negative_prompts, len(new)),
                                              parse_gamma(gamma_x, "gamma_x"), gamma_y, steps, guidance, seed,
                                              progress=_progress(progress)))

        def separate(mix: str | None, prompts: str, method: str = DEFAULT_METHOD, steps: float | None = None,
                     guidance: float = config.separate_guidance, seed: float | None = None,
                     dirac: str = SEPARATION.dirac, progress: gr.Progress = gr.Progress()):
            """Separates the mix into the named stems ("bass, drums, guitar, piano"); method: ensemble
            (default) or separator; dirac: "constrained" (MSDM's form) or "projected" (runs at any step count).
            Returns (stem files, the mix as the model heard it, zip, settings)."""
            if method not in ("separator", "ensemble"):
                raise app_error(f"method must be 'separator' or 'ensemble' (got {method!r}); for one stem call "
                                "/extract.")
            return api_result(tasks.separate(mix, prompts, method, "", steps, guidance, seed,
                                             progress=_progress(progress), dirac=dirac))

        def extract(mix: str | None, prompt: str, rest_prompt: str = "", steps: float | None = None,
                    guidance: float = config.separate_guidance, seed: float | None = None,
                    dirac: str = SEPARATION.dirac, progress: gr.Progress = gr.Progress()):
            """Extracts one stem (prompt="bass") and the rest; rest_prompt optionally names what else plays.
            Returns ([stem file, rest file], mix, zip, settings)."""
            return api_result(tasks.separate(mix, prompt, "extractor", rest_prompt, steps, guidance, seed,
                                             progress=_progress(progress), dirac=dirac))

        endpoints = {
            "generate": (generate, ["prompts", "negative_prompts", "seconds", "steps", "guidance", "gamma_x",
                                    "gamma_y", "seed"]),
            "accompany": (accompany, ["locked", "locked_prompts", "prompts", "negative_prompts", "steps", "guidance",
                                      "gamma_x", "gamma_y", "seed"]),
            "separate": (separate, ["mix", "prompts", "method", "steps", "separate_guidance", "seed", "dirac"]),
            "extract": (extract, ["mix", "prompt", "rest_prompt", "steps", "separate_guidance", "seed", "dirac"]),
        }
        for name, (fn, params) in endpoints.items():
            api_buttons[name].click(fn, [api[p] for p in params], api_out, api_name=name, **model_run)

    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    return demo


def launch_options(config: AppConfig | None = None) -> dict[str, Any]:
    """Keyword arguments for `demo.launch`: the upload limit, the examples folder, the style."""
    config = config or AppConfig()
    return {"max_file_size": config.max_file_size, "allowed_paths": [str(EXAMPLES_DIR)], "css": CSS, "head": HEAD,
            "footer_links": ["api", "gradio"]}


__all__ = ["API_SNIPPET", "build_ui", "launch_options"]
