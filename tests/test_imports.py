"""The product runs without the training package: importing any product module (screen, batch,
classify, export, ...) must not import it. Imports inside functions are checked by the
import-linter contracts in pyproject.toml, which .ci/run enforces."""

import subprocess
import sys

CODE = """
import importlib, pkgutil, sys, wsi_screen, wsi_screen.export
found = [*pkgutil.iter_modules(wsi_screen.__path__, 'wsi_screen.'), *pkgutil.iter_modules(wsi_screen.export.__path__, 'wsi_screen.export.')]
names = [m.name for m in found if m.name not in ('wsi_screen.train', 'wsi_screen.cli')]
for name in names:
    importlib.import_module(name)
print(len(names), sorted(m for m in sys.modules if m.startswith('wsi_screen.train')))
"""


def test_product_modules_load_no_training_module():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    assert int(out[0]) > 25  # every product module was imported
    assert out[1].strip() == "[]", out[1]


def test_model_files_and_checksums_import_no_torch():
    """Which weights file a name means and its checksum (run.json, report.json, the batch's
    "already screened with these models" check) need no torch: a batch rerun with nothing left
    to screen answers in about a second, not after torch's seconds of import."""
    code = (
        "import sys, wsi_screen.batch; from wsi_screen.config import Config; from wsi_screen.provenance import model_checksums;"
        "sums = model_checksums(Config()); print(len(sums['classifier']), len(sums['detector']), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["64", "64", "False"]
