"""The README's picture of the app: the bundled model, one "Generate all" at the app's defaults.

    .venv/bin/python scripts/screenshot.py                       # writes docs/app_screenshot.png
    .venv/bin/python scripts/screenshot.py --out /tmp/app.png --seed 3

Starts the app on the bundled model, opens it in Debian chromium (packages-dev.txt) at 1280×800,
generates the preset stems and saves a full-page screenshot. Commit the picture only when you mean
to update the README's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "docs/app_screenshot.png")
    p.add_argument("--seed", type=int, default=0, help="the seed typed into the app")
    p.add_argument("--timeout", type=float, default=600, help="longest wait for the generation (s)")
    args = p.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        p.error("Debian chromium is not installed: run `bash scripts/setup.sh --dev` as root "
                "(or apt-get install chromium)")

    from playwright.sync_api import sync_playwright

    from gmsdi.app import AppConfig, build_ui, launch_options
    from gmsdi.pipeline import GMSDIPipeline

    config = AppConfig()
    demo = build_ui(GMSDIPipeline.from_pretrained(), config)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(config))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(args.timeout * 1000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("button", name="Generate all", exact=True).wait_for()
            page.locator("#generate-seed textarea, #generate-seed input").first.fill(str(args.seed))
            before = page.inner_text("#generate-status")
            page.get_by_role("button", name="Generate all", exact=True).click()
            page.wait_for_function(
                "([before]) => { const t = document.querySelector('#generate-status').innerText;"
                " return t !== before && t.includes('stems ·'); }", arg=[before], timeout=args.timeout * 1000)
            page.locator(".mix-audio a[download]").first.wait_for()
            page.wait_for_timeout(1000)  # let the pictures paint
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
