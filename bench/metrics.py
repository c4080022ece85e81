"""Evaluation protocol as additive per-example statistics.

Every metric is a function of *sums* of per-example statistics, so one mechanism serves point
estimates, chance levels and the test-set bootstrap (resample examples = reweight the sums).

Classification: columns ``correct`` and ``count`` (top-1 accuracy = correct / count), then per class
``correct_c`` and ``support_c`` (examples of class c, and those predicted right).
Segmentation (ignore index excluded everywhere): per class intersection and union, then correct /
valid pixels, then the same for the *boundary band* (valid pixels within ``band`` px of a label edge),
then per class ``support_c`` (pixels labelled c; the intersection is the pixels of c predicted right).
mIoU averages IoU over classes with a non-empty union in the summed statistics (the VOC protocol
computes it from the dataset-wide confusion matrix, which is what the sums are).

``balanced_accuracy`` (mean per-class recall over the C classes present in the labels, per image for
classification and per pixel for segmentation) is the scale identity dependence is measured on
(``SCALE``), with chance ``balanced_chance`` = 1/C (in every bootstrap replicate, C of that replicate):
any input-independent predictor over the present classes scores 1/C on it for either kind (a constant
one exactly), and replacing a fraction q of predictions by uninformed labels over those classes moves it
q of the way to 1/C, so D means the same for dense and global tasks (docs/protocols.md). A predictor
that outputs classes absent from the labels scores below chance. mIoU and top-1 stay the task metrics.

A task that declares a background class (``TaskInfo.background_index``) also gets
``object_balanced_accuracy`` and ``object_chance``: the same scale over the other classes alone. On a dense
task background is a class, so a model that finds the objects without telling their classes apart
already clears chance on ``balanced_accuracy``; over the object classes it scores 1/C_obj, chance. The
verdict's conditioning check requires a margin on both (``CONDITIONING_SCALES``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bench.data import TaskInfo

BOUNDARY_BAND = 3  # pixels on each side of a label edge
SCALE = "balanced_accuracy"  # the metric identity dependence D is computed on, for every task kind
# what the conditioning check requires a margin over chance on: (name, metric, its chance), the second
# only for tasks that declare a background class (module docstring)
CONDITIONING_SCALES = (("all classes", SCALE, "balanced_chance"),
                       ("object classes", "object_balanced_accuracy", "object_chance"))
BOOTSTRAP_SEED = 1000


@dataclass(frozen=True)
class Scale:
    """The scale a study reads dependence D on (``verdict.scale``): a metric, its chance, and which
    conditioning scales (``CONDITIONING_SCALES`` names) check D's denominator."""

    name: str
    metric: str
    chance: str
    label: str


# all classes, background included (chance 1/C): the scale of every study before bench 0.3.2
ALL_CLASSES = Scale("balanced_accuracy", SCALE, "balanced_chance", "balanced accuracy over all classes")
# the K object classes (chance 1/K) on object examples/pixels, the background logit left out: the same evidence
# loss reads the same D on a dense and a global task (tests/bench/test_metrics_recognition.py)
RECOGNITION = Scale("recognition", "recognition_balanced_accuracy", "recognition_chance",
                      "recognition: balanced accuracy over the object classes")
SCALES = {m.name: m for m in (ALL_CLASSES, RECOGNITION)}


def scale_of(metric: str) -> Scale:
    """The scale whose metric results.json names (``Results.scale``); all classes for anything else."""
    return next((s for s in SCALES.values() if s.metric == metric), ALL_CLASSES)


def boundary_band(target: torch.Tensor, band: int = BOUNDARY_BAND) -> torch.Tensor:
    """Bool (N, H, W): pixels within ``band`` px of a change of label (ignore pixels count as labels)."""
    t = target[:, None].float()
    hi = F.max_pool2d(t, 3, 1, 1)
    lo = -F.max_pool2d(-t, 3, 1, 1)
    edge = (hi != lo).float()
    if band > 1:
        edge = F.max_pool2d(edge, 2 * band - 1, 1, band - 1)
    return edge[:, 0] > 0


def logits_stats(logits: torch.Tensor, target: torch.Tensor, info: TaskInfo) -> torch.Tensor:
    """``example_stats`` of a model's logits (N, C[, H, W]): its prediction, and for a task with a background
    class its prediction among the object classes alone (the background logit left out), for recognition."""
    logits = logits.detach()
    object_pred = None
    if info.background_index is not None:
        left_out = torch.tensor([info.background_index], device=logits.device)
        object_pred = logits.index_fill(1, left_out, float("-inf")).argmax(1).cpu()
    return example_stats(logits.argmax(1).cpu(), target, info, object_pred)


def example_stats(pred: torch.Tensor, target: torch.Tensor, info: TaskInfo,
                  object_pred: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example statistics (N, K) float64 for predicted labels ``pred`` (same shape as target); with
    ``object_pred`` (the prediction among the object classes, for a task with a background class) the
    recognition and localisation columns are appended (``recognition_columns``)."""
    core = _core_stats(pred, target, info)
    if object_pred is None or info.background_index is None:
        return core
    return torch.cat([core, recognition_columns(pred, object_pred, target, info)], 1)


def recognition_columns(pred: torch.Tensor, object_pred: torch.Tensor, target: torch.Tensor,
                        info: TaskInfo) -> torch.Tensor:
    """Per example, over the K object classes: on examples/pixels labelled with an object class, hits of the
    object-class prediction and support (2K columns); then localisation: object pixels predicted as some object,
    object pixels, background pixels predicted background, background pixels (4 columns)."""
    b, c = info.background_index, info.num_classes
    objects = torch.tensor([k for k in range(c) if k != b])
    valid = torch.ones_like(target, dtype=torch.bool) if info.ignore_index is None else target != info.ignore_index
    t = torch.where(valid, target, b)
    is_obj = valid & (t != b)
    is_bg = valid & (t == b)
    n = target.shape[0]

    def per_example(mask: torch.Tensor) -> torch.Tensor:
        return mask.reshape(n, -1).sum(1, keepdim=True).double()

    hit = [per_example(is_obj & (t == k) & (object_pred == k)) for k in objects.tolist()]
    support = [per_example(is_obj & (t == k)) for k in objects.tolist()]
    loc = [per_example(is_obj & (pred != b)), per_example(is_obj), per_example(is_bg & (pred == b)), per_example(is_bg)]
    return torch.cat([*hit, *support, *loc], 1)


def _core_stats(pred: torch.Tensor, target: torch.Tensor, info: TaskInfo) -> torch.Tensor:
    c = info.num_classes
    if info.kind == "classification":
        correct = (pred == target).double()
        support = F.one_hot(target.long(), c).double()
        return torch.cat([correct[:, None], torch.ones_like(correct)[:, None], support * correct[:, None], support], 1)
    valid = torch.ones_like(target, dtype=torch.bool) if info.ignore_index is None else target != info.ignore_index
    t = torch.where(valid, target, 0)
    if (t >= c).any() or (t < 0).any():
        bad = int(t[(t >= c) | (t < 0)][0])
        raise ValueError(f"mask value {bad} is outside 0..{c - 1} and is not the ignore index")
    n = target.shape[0]
    oh_t = F.one_hot(t, c).bool() & valid[..., None]
    oh_p = F.one_hot(pred.clamp(0, c - 1), c).bool() & valid[..., None]
    inter = (oh_t & oh_p).flatten(1, 2).sum(1)
    union = (oh_t | oh_p).flatten(1, 2).sum(1)
    correct = (pred == target) & valid
    band = boundary_band(target) & valid
    cols = [inter, union, correct.flatten(1).sum(1, keepdim=True), valid.flatten(1).sum(1, keepdim=True),
            (correct & band).flatten(1).sum(1, keepdim=True), band.flatten(1).sum(1, keepdim=True),
            oh_t.flatten(1, 2).sum(1)]
    return torch.cat(cols, 1).double().reshape(n, -1)


def metrics_from_sums(sums: np.ndarray, info: TaskInfo) -> dict[str, np.ndarray]:
    """Metrics from summed statistics; ``sums`` may have leading batch dims (bootstrap replicates)."""
    c = info.num_classes
    base = 2 + 2 * c if info.kind == "classification" else 3 * c + 4
    extra = recognition(sums[..., base:], info) if sums.shape[-1] > base else {}
    if info.kind == "classification":
        hits, support = sums[..., 2 : 2 + c], sums[..., 2 + c : 2 + 2 * c]
        out = {"accuracy": sums[..., 0] / np.maximum(sums[..., 1], 1), **balanced(hits, support, info)}
    else:
        out = _segmentation_metrics(sums, info)
    if info.background_index is None:  # every class is an object class: recognition is balanced accuracy
        extra = {"recognition_balanced_accuracy": out["balanced_accuracy"], "recognition_chance": out["balanced_chance"]}
    return {**out, **extra}  # a background task's statistics from before bench 0.3.1 have no recognition columns


def recognition(cols: np.ndarray, info: TaskInfo) -> dict[str, np.ndarray]:
    """Recognition over the K object classes (chance 1/K present) and localisation, object vs background
    (chance 1/2), from ``recognition_columns``' sums."""
    k = info.num_classes - 1
    hits, support = cols[..., :k], cols[..., k : 2 * k]
    tp, n_obj, tn, n_bg = (cols[..., 2 * k + i] for i in range(4))
    rates = np.stack([tp / np.maximum(n_obj, 1), tn / np.maximum(n_bg, 1)], -1)
    present = np.stack([n_obj > 0, n_bg > 0], -1)
    return {"recognition_balanced_accuracy": balanced_accuracy(hits, support),
            "recognition_chance": balanced_chance(support),
            "localisation_balanced_accuracy": np.where(present, rates, 0.0).sum(-1) / np.maximum(present.sum(-1), 1),
            "localisation_chance": 1.0 / np.maximum(present.sum(-1), 1)}


def _segmentation_metrics(sums: np.ndarray, info: TaskInfo) -> dict[str, np.ndarray]:
    c = info.num_classes
    inter, union = sums[..., :c], sums[..., c : 2 * c]
    correct, valid, b_correct, b_valid = (sums[..., 2 * c + i] for i in range(4))
    support = sums[..., 2 * c + 4 : 3 * c + 4]
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
        miou = np.nanmean(np.where(np.isnan(iou).all(-1, keepdims=True), 0.0, iou), -1)
        return {
            "miou": miou,
            **balanced(inter, support, info),
            "pixel_accuracy": correct / np.maximum(valid, 1),
            "boundary_accuracy": b_correct / np.maximum(b_valid, 1),
            "interior_accuracy": (correct - b_correct) / np.maximum(valid - b_valid, 1),
            "per_class_iou": iou,
        }


def balanced(hits: np.ndarray, support: np.ndarray, info: TaskInfo) -> dict[str, np.ndarray]:
    """Balanced accuracy and its chance over every class, and the per-class recalls behind it (NaN for a class
    absent from the labels: what a D above 1 or a collapse to one class is read from); with a declared
    background, also over the other classes."""
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
    out = {"balanced_accuracy": balanced_accuracy(hits, support), "balanced_chance": balanced_chance(support),
           "per_class_recall": recall}
    if info.background_index is not None:
        objects = [k for k in range(info.num_classes) if k != info.background_index]
        out["object_balanced_accuracy"] = balanced_accuracy(hits[..., objects], support[..., objects])
        out["object_chance"] = balanced_chance(support[..., objects])
    return out


def balanced_accuracy(hits: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Mean over classes with support of hits_c / support_c (recall); leading batch dims kept."""
    present = support > 0
    recall = np.where(present, hits / np.maximum(support, 1), 0.0)
    return recall.sum(-1) / np.maximum(present.sum(-1), 1)


def balanced_chance(support: np.ndarray) -> np.ndarray:
    """1/C, C the classes present in the labels: what any input-independent predictor over them scores."""
    return 1.0 / np.maximum((support > 0).sum(-1), 1)


def mean_of(values) -> float | None:
    """Mean of the finite values; None when there are none (e.g. every lesion of a model at chance)."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def primary_metric(info: TaskInfo) -> str:
    return "accuracy" if info.kind == "classification" else "miou"


@dataclass
class Outcome:
    """Per-example statistics of one model on one split: the raw material of every reported number."""

    stats: np.ndarray  # (N, K)
    info: TaskInfo

    @property
    def n(self) -> int:
        return self.stats.shape[0]

    def _sums(self) -> np.ndarray:
        return self.stats.sum(0)

    def metrics(self) -> dict[str, float | list[float | None]]:
        out: dict = {}
        for k, v in metrics_from_sums(self._sums(), self.info).items():
            out[k] = [None if np.isnan(x) else round(float(x), 6) for x in v] if np.ndim(v) else round(float(v), 6)
        return out

    def value(self, metric: str) -> float:
        """One scalar metric of the whole split (the point estimate ``bootstrap`` resamples)."""
        return float(metrics_from_sums(self._sums(), self.info)[metric])

    @property
    def primary(self) -> float:
        """The task's reported metric (top-1 accuracy, mIoU)."""
        return self.value(primary_metric(self.info))

    @property
    def score(self) -> float:
        """The dependence scale (``SCALE``, balanced accuracy) on which D is computed."""
        return self.value(SCALE)

    @property
    def chance_score(self) -> float:
        """Chance on the dependence scale for these labels: 1/C over the classes present."""
        return self.value("balanced_chance")

    def margin(self, scale: Scale) -> float:
        """Above chance on ``scale``: D's denominator."""
        return self.value(scale.metric) - self.value(scale.chance)

    def bootstrap(self, weights: np.ndarray, metric: str = SCALE) -> np.ndarray:
        """``metric`` (default: the dependence scale) under each row of resampling weights (B, N)."""
        return metrics_from_sums(weights @ self.stats, self.info)[metric]


def bootstrap_weights(n: int, replicates: int, seed: int) -> np.ndarray:
    """Multinomial resampling counts (B, N): row b says how often each example is drawn in replicate b."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def shared_weights(n: int, replicates: int) -> np.ndarray:
    """Bootstrap resampling counts for a test set of n examples, the SAME for every seed and for tasks
    that share test images: the verdict averages seeds replicate by replicate, so a replicate must
    resample the same examples in every seed (the test set is shared; its sampling error is too)."""
    return bootstrap_weights(n, replicates, seed=BOOTSTRAP_SEED)


def scales_of(info: TaskInfo, scale: Scale = ALL_CLASSES) -> list[tuple[str, str, str]]:
    """The conditioning scales that check D's denominator on a task. All classes: all classes, and the object
    classes if the task has a background (a model that finds objects without telling them apart clears the
    first). Recognition: the recognition margin alone, which is D's denominator and already leaves the
    background out."""
    if scale == RECOGNITION:
        return [("recognition", scale.metric, scale.chance)]
    return list(CONDITIONING_SCALES) if info.background_index is not None else list(CONDITIONING_SCALES[:1])


def margins(outcome: Outcome, weights: np.ndarray,
            scale: Scale = ALL_CLASSES) -> dict[str, tuple[float, np.ndarray]]:
    """Per conditioning scale of the outcome's task: name -> (margin over chance, its bootstrap replicates)."""
    return {name: (outcome.value(metric) - outcome.value(chance),
                   outcome.bootstrap(weights, metric) - outcome.bootstrap(weights, chance))
            for name, metric, chance in scales_of(outcome.info, scale)}


def chance_outcome(train_targets: torch.Tensor, test_targets: torch.Tensor, info: TaskInfo) -> Outcome:
    """Predict the training set's majority class everywhere (ignore index excluded)."""
    t = train_targets.flatten()
    if info.ignore_index is not None:
        t = t[t != info.ignore_index]
    counts = torch.bincount(t, minlength=info.num_classes)
    pred = torch.full_like(test_targets, int(counts.argmax()))
    object_pred = None
    if info.background_index is not None:  # the majority among the object classes: chance for recognition
        counts[info.background_index] = -1
        object_pred = torch.full_like(test_targets, int(counts.argmax()))
    return Outcome(example_stats(pred, test_targets, info, object_pred).numpy(), info)
