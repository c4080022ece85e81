"""Can the CamVid twin's label be read from the trained segmenters? (issue 12: why the U-Net's
classification head stays at chance on camvid_cls.)

The twin's label is the dominant class of each mask. This script takes each seed's trained
*segmentation* baseline from a camvid_cpu run folder (its checkpoints: the reference copy in this folder
leaves them out, so pass the run folder the study wrote), predicts every test mask, applies the twin's own
labelling rule (``dominant_labels``, the same background handling) to the prediction, and scores it
against the twin's test labels on the dependence scale (balanced accuracy; chance 1/C over the classes
present). If a segmenter read this way beats the trained classification head, the information is in the
network and the head's image-level supervision (367 labels) is what fails to learn it.

    python reports/camvid_cpu/twin_from_segmenter.py reports/runs/camvid_cpu-<hash> unet resnet

twin_from_segmenter.txt beside it was computed on the run before ``class_weights: balanced`` (plain
cross-entropy; its U-Net heads stayed at chance), not on the run whose results.json is in this folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from bench.metrics import Outcome, balanced_chance, example_stats
from bench.plan import build_model
from bench.registry import TASKS
from bench.tasks.derived import dominant_labels


def main(run: Path, archs: list[str]) -> None:
    torch.set_num_threads(1)
    resolved = yaml.safe_load((run / "config.resolved.yaml").read_text())
    seg, twin = TASKS.build(resolved["tasks"]["camvid"]), TASKS.build(resolved["tasks"]["camvid_cls"])
    info, y = seg.info, twin.test.targets().numpy()
    support = np.bincount(y, minlength=info.num_classes).astype(float)
    print(f"twin test labels per class: {support.astype(int).tolist()}; chance {float(balanced_chance(support)):.3f}")
    for arch in archs:
        for ckpt in sorted(run.glob(f"checkpoints/camvid__{arch}__baseline__s*.pt")):
            model = build_model(resolved, arch, info)
            model.load_state_dict(torch.load(ckpt, weights_only=False)["model"])
            with torch.no_grad():
                masks = torch.cat([model.eval()(x).argmax(1) for x, _ in seg.test.batches(32, train=False)])
            pred = dominant_labels(masks, info.num_classes, None, info.background_index)
            pred = torch.where(pred < 0, info.background_index or 0, pred)
            score = Outcome(example_stats(pred, twin.test.targets(), twin.info).numpy(), twin.info).score
            print(f"{arch} {ckpt.stem.rsplit('__', 1)[1]}: balanced accuracy {score:.3f}, "
                  f"margin over chance {score - float(balanced_chance(support)):.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:] or ["unet", "unet_input_skip", "resnet"])
