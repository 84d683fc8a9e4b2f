"""The docs say what the code measures: generated tables are up to date with the JSON the pipelines
wrote (pipelines/doc_tables.py), and the README's commands match the repository."""

from __future__ import annotations

import re

import pytest

from pipelines import doc_tables

from .conftest import REPO


def test_generated_docs_are_up_to_date():
    stale = [str(p.relative_to(REPO)) for p in doc_tables.stale()]
    assert not stale, f"stale generated docs {stale}: run `PYTHONPATH=$PWD python pipelines/doc_tables.py` and commit"


def test_every_renderer_has_a_block_in_the_docs():
    text = "".join((REPO / page).read_text() for page in doc_tables.PAGES if (REPO / page).exists())
    assert {name for name in doc_tables.RENDERERS if f"<!-- generated:{name} -->" not in text} == set()


def test_render_blocks_rewrites_only_the_blocks():
    text = "prose 1.0\n<!-- generated:x -->\nold 0.5\n<!-- /generated:x -->\nprose 2.0\n<!-- generated:x -->\n<!-- /generated:x -->\n"
    out = doc_tables.render_blocks(text, {"x": lambda: "| a |\n|---|\n| 0.7 |\n"})
    assert out == (
        "prose 1.0\n<!-- generated:x -->\n| a |\n|---|\n| 0.7 |\n<!-- /generated:x -->\nprose 2.0\n"
        "<!-- generated:x -->\n| a |\n|---|\n| 0.7 |\n<!-- /generated:x -->\n"
    )
    assert doc_tables.render_blocks(out, {"x": lambda: "| a |\n|---|\n| 0.7 |"}) == out  # idempotent
    with pytest.raises(ValueError, match="no renderer"):
        doc_tables.render_blocks(text, {})
    with pytest.raises(ValueError, match="closing"):
        doc_tables.render_blocks("<!-- generated:x -->\nnever closed\n", {"x": lambda: ""})


def test_a_changed_figure_makes_the_page_stale(tmp_path, monkeypatch):
    """The staleness check sees a figure that moved in a pipeline's JSON."""
    import json

    card = json.loads(doc_tables.CARD.read_text())
    page = (REPO / "docs" / "classifier.md").read_text()
    assert doc_tables.render_blocks(page) == page
    card["metrics"]["test"]["per_class"]["NGS"]["sensitivity"] = 0.123456
    moved = tmp_path / "classifier.json"
    moved.write_text(json.dumps(card))
    monkeypatch.setattr(doc_tables, "CARD", moved)
    fresh = doc_tables.render_blocks(page)
    row = next(line for line in fresh.splitlines() if line.startswith("| NGS |"))
    assert fresh != page and row.split(" | ")[3] == "0.12" and row not in page


def test_card_tables_render_a_locked_era_card():
    """The card train/export.py writes (out-of-fold and locked figures, smear flag targets) renders
    with both columns, so the lead's next card needs only the one command."""
    per_class = {"n": 10, "precision": 0.9, "sensitivity": 0.8, "specificity": 0.99}
    summary = {
        "n_images": 100,
        "accuracy": 0.8,
        "balanced_accuracy": 0.7,
        "macro_f1": 0.7,
        "ece": 0.02,
        "blast_test": {"n_positive": 12},
        "per_class": {"NGS": per_class, "PMB": {"n": 0, "precision": None, "sensitivity": None, "specificity": 1.0}},
    }
    card = {
        "arch": "resnext26ts",
        "input_px": 96,
        "field_um": 29.0,
        "provenance": {"exported": "2026-12-03", "git_commit": "abc", "limitations": ["PMB untrained."]},
        "metrics": {
            "targets": {
                "blast_auc": {"target": ">= 0.985", "out_of_fold": 0.97, "locked": 0.99, "met": False},
                "false_blast_rate_deepapl": {"target": "<= 0.03", "out_of_fold": 0.02, "locked": 0.025, "met": True},
                "blast_flag_rate_0.005_locked": {"target": ">= 0.8", "locked": 0.85, "met": True},
            },
            "test": summary,
            "locked": summary,
            "needs_review_locked": {"flagged_fraction": 0.1, "accuracy_kept": 0.9, "accuracy_flagged": 0.4},
            "shift_robustness": {"none": {"blast_auc": 0.97, "false_blast_rate_pbc": 0.001}},
        },
    }
    targets = doc_tables.card_targets(card)
    assert targets.splitlines()[0] == "| figure | target | out of fold | locked set | met |"
    assert "| blast AUC (MYO+MOB) | ≥ 0.985 | 0.970 | 0.990 | **not met** |" in targets
    assert "| false-blast rate, DeepAPL non-blasts | ≤ 3 % | 2.0 % | 2.5 % | met |" in targets
    assert "| 2000-cell smears flagged, 0.5 % blasts | ≥ 80 % |  | 85.0 % | met |" in targets
    tables = doc_tables.card_per_class(card)
    assert tables.startswith("Out of fold, 100 images") and "Locked set, 100 images" in tables
    assert "| PMB | 0 | – | – | 1.00 |" in tables
    assert "Locked set: 100 images (12 blasts)" in doc_tables.card_summary(card)
    assert "| none | 0.970 | 0.1 % |" in doc_tables.card_shifts(card)
    assert "* PMB untrained." in doc_tables.card_limitations(card)


def _fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_readme_quickstart_and_test_commands_match_the_repository():
    """The README's first bash block sets up a fresh machine and screens the shipped demo slide;
    its second installs the test extras and runs the same test command as .ci/run."""
    readme = (REPO / "README.md").read_text()
    quickstart, tests = _fenced(readme, "bash")[:2]
    assert "pip install -e .\n" in quickstart
    demo = re.search(r"wsi-screen screen (\S+) -o", quickstart)
    assert demo and (REPO / demo.group(1)).is_file()
    assert 'pip install -e ".[test]"' in tests
    test_command = tests.strip().splitlines()[-1]
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert test_command == "python -m pytest -q" and test_command in ci
    assert any(line.endswith('install -q -e ".[test]"') for line in ci)


def test_readme_links_point_to_files():
    readme = (REPO / "README.md").read_text()
    paths = set(re.findall(r"`((?:docs|configs|pipelines|benchmarks|wsi_screen|tests)/[\w./-]+\.(?:md|py|yaml|json|tiff))`", readme))
    paths |= {"CHANGELOG.md"} if "CHANGELOG.md" in readme else set()
    assert paths and [p for p in sorted(paths) if not (REPO / p).exists()] == []
