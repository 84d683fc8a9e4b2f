"""The product runs without the training package: screening a slide must not import it."""

import subprocess
import sys


def test_screening_loads_no_training_module():
    code = "import sys, wsi_screen.screen, wsi_screen.batch, wsi_screen.cli; print(sorted(m for m in sys.modules if m.startswith('wsi_screen')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'wsi_screen.screen'" in loaded
    assert "wsi_screen.train" not in loaded, loaded
