"""``dvc plots show`` without a network: an HTML template carrying Vega, Vega-Lite and Vega-Embed itself.

DVC's default page loads those three scripts from a CDN, so offline (and on many hospital networks) it
draws none of its interactive plots. The template here inlines them from the pinned ``vl-convert-python``
package and is set as this clone's ``plots.html_template`` (in .dvc/config.local, like the remote), so
plain ``dvc plots show`` / ``dvc plots diff`` work anywhere. ``make venv`` writes both.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(".dvc/plots/offline.html")  # DVC resolves plots.html_template against .dvc/
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- Vega, Vega-Lite and Vega-Embed from vl-convert-python {version}: no network needed -->
    <script>
__BUNDLE__
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    <p><b>What each model was trained on</b> is printed in the band under each of its PNG figures (a red band: a
    model trained on the demo's SYNTHETIC images, not for X-rays). DVC draws the curves and the confusion matrix
    from the data files alone and cannot print it there: see <code>models/run.json</code> (<code>trained_on</code>)
    of each revision, or the model card.</p>
    {plot_divs}
</body>
</html>
"""


def page() -> str:
    """The template's text. The bundle never holds the placeholders DVC fills or a closing script tag."""
    import vl_convert

    bundle = vl_convert.javascript_bundle()
    if "</script" in bundle or any(p in bundle for p in ("{plot_divs}", "{scripts}", "{refresh_tag}")):
        raise RuntimeError("the Vega bundle cannot be inlined as it is")
    return PAGE.replace("{version}", vl_convert.__version__).replace("__BUNDLE__", bundle)


def main() -> int:
    """Writes the template if it is missing or stale, and points this clone's DVC at it."""
    text = page()
    if not TEMPLATE.is_file() or TEMPLATE.read_text(encoding="utf-8") != text:
        TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
        TEMPLATE.write_text(text, encoding="utf-8")
    relative = TEMPLATE.relative_to(".dvc")
    done = subprocess.run([sys.executable, "-m", "dvc", "config", "--local", "plots.html_template", str(relative)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"error: could not set plots.html_template: {done.stderr.strip()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
