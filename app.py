"""GMSDI in the browser: generate, accompany and separate stems on the bundled model.

    python app.py                         # the bundled model, http://127.0.0.1:7860
    python app.py --checkpoint PATH       # another checkpoint written by train.py --export
    python app.py --tiny                  # a tiny untrained model built in code (tries the UI, makes noise)
    python app.py --host 0.0.0.0 --port 7860 --share

Hugging Face Spaces runs this file (`app_file: app.py`); GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
set the default host and port. The UI lives in `gmsdi.app` (`build_ui(pipeline) -> gr.Blocks`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from gmsdi.app import AppConfig, build_ui, launch_options, tiny_config, tiny_pipeline  # noqa: E402
from gmsdi.cli_common import threads_arg  # noqa: E402

__all__ = ["build_ui", "get_parser", "main"]


def get_parser() -> argparse.ArgumentParser:
    summary, usage = __doc__.split("\n\n")[:2]
    p = argparse.ArgumentParser(prog="python app.py", description=summary, epilog=f"examples:\n{usage}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to serve on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                   help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs network)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", default=None, help="model checkpoint (default: the bundled model)")
    model.add_argument("--tiny", action="store_true", help="a tiny untrained model built in code, for trying the UI")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: Accelerate chooses; CPU without GPU)")
    p.add_argument("--max-seconds", type=float, default=None, help="longest audio accepted or generated (default 30)")
    p.add_argument("--max-file-size", default=None, help="largest upload, e.g. 50mb (default 50mb)")
    p.add_argument("--concurrency", type=int, default=None, help="model runs at once (default 1)")
    p.add_argument("--threads", type=threads_arg, default=None, metavar="N|auto",
                   help="CPU threads per run (default auto: the cores other processes leave free)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    overrides = {k: v for k, v in {"max_seconds": args.max_seconds, "max_file_size": args.max_file_size,
                                   "concurrency": args.concurrency, "threads": args.threads}.items() if v is not None}
    if args.max_seconds is not None:
        overrides["seconds"] = min(args.max_seconds, 2.0 if args.tiny else 4.0)
    if args.tiny:
        pipeline, config = tiny_pipeline(device=args.device or "cpu"), tiny_config(**overrides)
    else:
        from gmsdi.pipeline import GMSDIPipeline

        try:
            pipeline = GMSDIPipeline.from_pretrained(args.checkpoint, device=args.device)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            print("hint: `python app.py --tiny` starts the app on a tiny untrained model built in code, to try the "
                  "interface without a checkpoint.", file=sys.stderr)
            return 2
        config = AppConfig(**overrides)
    demo = build_ui(pipeline, config)
    print(f"GMSDI app on {pipeline.device}: http://{args.host}:{args.port}  (Ctrl+C to stop)", flush=True)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options(config))
    except OSError as e:
        print(f"error: cannot serve on {args.host}:{args.port} ({e}); pick another port with --port", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
