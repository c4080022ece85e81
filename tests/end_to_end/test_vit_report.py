"""A ViT's block_lesion in report.md: the bars and the table count single-branch lesions only (a transformer
block lesioned whole is a unit record after them), and D is broken down per declared branch kind."""

from __future__ import annotations

import re
import textwrap

import pytest

from tests.helpers import run_study

CONFIG = """
name: vit_report
seeds: [0, 1]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 32, n_test: 16, image_size: 16}
  cls: {name: synthetic_shapes, target: image, n_train: 32, n_test: 16, image_size: 16}
architectures:
  vit: {name: vit, depth: 2, width: 8, heads: 2, patch: 4}
  resnet: {name: cifar_resnet, depth: 8, width: 4}
train: {epochs: 1, batch_size: 16}
bootstrap: 100
ablations: [{name: block_lesion}]
"""


@pytest.mark.slow  # a two-seed study of two architectures: about 15-30 s
def test_a_vits_lesion_table_counts_branches_and_breaks_d_down_by_kind(tmp_path):
    (tmp_path / "c.yaml").write_text(textwrap.dedent(CONFIG))
    res = run_study(tmp_path / "c.yaml", tmp_path / "run")
    vit_cell = next(c for c in res["cells"] if c["architecture"] == "vit" and c["task"] == "cls")
    records = vit_cell["ablations"]["block_lesion"]["records"]
    assert len(records) == 6  # 2 blocks x (attention, mlp) + 2 blocks whole
    report = (tmp_path / "run" / "report.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (?:seg|cls) \| (vit|resnet) \| 2 \| (\d+) \|", report, re.M)}
    assert rows == {"vit": "4", "resnet": "3"}  # branches lesioned one at a time, not the whole-block records
    for task in ("seg", "cls"):  # every declared kind, in this order, with how many seeds have a D (a baseline
        kinds = re.findall(rf"^\| {task} \| vit \| (attention|mlp|attention\+mlp) \| \d of 2 \|", report, re.M)
        assert kinds == ["attention", "mlp", "attention+mlp"]  # at chance has none)
    assert not re.search(r"^\| \w+ \| resnet \| (attention|mlp)", report, re.M)  # declared kinds only
