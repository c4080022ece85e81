"""The ablation contract (bench/ablations/base.py): declarations checked when a class is defined, the
test/train-time pair of abstract bases, the generic record; and the layering around it: the ablations
import nothing of the reporting layer, whose renderers are found by class."""

from __future__ import annotations

import ast
import pickle
import types
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel, ValidationError

from bench.ablations.base import (
    Ablation,
    AblationResult,
    DependenceRecord,
    Key,
    Summary,
    TestTimeAblation,
    TrainTimeAblation,
    record_of,
)
from bench.ablations.lesion import BlockLesion, BlockLesionKey
from bench.ablations.skip_removal import SkipRemoval
from bench.errors import BenchError

ROOT = Path(__file__).resolve().parents[2]


class NoSufficiency(Summary):
    readout: float


def _run(self, ctx): ...


def _variants(self, flow): ...


def define(name: str, base: type, **attrs):
    """``class <name>(base)`` with ``attrs`` in its body, as a plugin file would write it."""
    return types.new_class(name, (base,), exec_body=lambda ns: ns.update({"__module__": __name__, **attrs}))


def test_a_bad_declaration_is_refused_when_the_class_is_defined_naming_it():
    with pytest.raises(BenchError, match=r"ablation tests\.ablations\.test_base\.Foo: declare removes = .*removes='foo'"):
        class Foo(TestTimeAblation):
            removes: ClassVar = "foo"

            def run(self, ctx): ...


@pytest.mark.parametrize("base, attrs, message", [
    (TestTimeAblation, {"measure": "loud"}, r"declare removes .* measure='loud'"),
    (TestTimeAblation, {"reads": "output"}, r"declare phase .* reads = 'model' \| 'input' \(got phase='test', reads='output'\)"),
    (TestTimeAblation, {"version": "2"}, r"version must be a whole number"),
    (TestTimeAblation, {"Summary": dict}, r"Summary must subclass bench\.ablations\.base\.Summary"),
    (TestTimeAblation, {"measure": "sufficiency", "Summary": NoSufficiency},
     r"measure is 'sufficiency' but its Summary has no 'sufficiency'"),
    (TrainTimeAblation, {"phase": "test"}, r"derives from TrainTimeAblation but declares phase = 'test'"),
    (Ablation, {"run": None}, r"a test-time ablation implements run\(\)"),  # the plain base is checked all the same
    (Ablation, {"phase": "train", "variants": None}, r"a train-time ablation implements variants\(\)"),
], ids=["measure", "reads", "version", "summary", "summary-field", "phase", "no-run", "no-variants"])
def test_each_declaration_and_method_is_checked(base, attrs, message):
    good = {"removes": "branch", "run": _run, "variants": _variants}
    define("Good", base, **good)
    with pytest.raises(BenchError, match=rf"ablation tests\.ablations\.test_base\.Bad: {message}"):
        define("Bad", base, **{k: v for k, v in {**good, **attrs}.items() if v is not None})


def test_an_abstract_ablation_is_refused_when_a_config_names_it():
    class Abstract(TestTimeAblation):  # declares removes, no run yet: defined, refused when a config names it
        removes: ClassVar = "branch"

    with pytest.raises(BenchError, match=r"Abstract: abstract, implement run\(\)"):
        Abstract.declaration()
    with pytest.raises(TypeError):
        Abstract()


def test_bases_in_the_middle_need_not_declare_anything():
    class Middle(TestTimeAblation):
        """Shared code, no declarations."""

        def helper(self) -> int:
            return 1

    class Plain(Ablation):  # concrete, declares nothing: refused only when a config names it
        """Nothing declared."""

    class Branchy(Middle):
        removes: ClassVar = "branch"

        def run(self, ctx):
            return AblationResult([], self.Summary(dependence=None))

    assert Branchy.declaration()["family"] == "ensemble" and Branchy().helper() == 1
    assert Branchy.phase == "test" and Branchy().params.bn_policy == "running"  # TestTimeParams by default
    with pytest.raises(BenchError, match="Plain: declare removes"):
        Plain.declaration()
    assert SkipRemoval.phase == "train" and issubclass(SkipRemoval, TrainTimeAblation)


def test_declarations_in_results_json_are_unchanged():
    assert BlockLesion.declaration() == {"version": 2, "phase": "test", "removes": "branch", "measure": "dependence",
                                         "reads": "model", "family": "ensemble", "higher_is_better": False}
    assert SkipRemoval.declaration()["family"] == "identity"


def test_record_of_types_the_key_and_refuses_other_fields():
    rec = BlockLesion.Record
    assert rec.__name__ == "BlockLesionRecord" and issubclass(rec, DependenceRecord)
    assert pickle.loads(pickle.dumps(rec)) is rec  # bound to its name in its module
    assert rec.model_fields["key"].annotation is BlockLesionKey
    good = {"key": {"block": "trunk.1", "stage": 0, "downsampling": False, "shortcut": "identity"},
            "metrics": {"accuracy": 0.5}, "primary": 0.5, "delta_primary": -0.1, "score": 0.5, "dependence": 0.2}
    assert rec.model_validate(good).model_dump() == good
    with pytest.raises(ValidationError):
        rec.model_validate({**good, "extra": 1})
    with pytest.raises(ValidationError):
        rec.model_validate({**good, "key": {"block": "trunk.1"}})

    class FillKey(Key):
        fill: str

    assert record_of(FillKey).__name__ == "FillRecord" and isinstance(record_of(FillKey)(
        key={"fill": "zero"}, metrics={}, primary=0.0, delta_primary=0.0, score=0.0, dependence=None), BaseModel)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from bench import plots`
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_the_ablations_import_nothing_of_the_reporting_layer():
    reporting = ("bench.report", "bench.plots", "bench.sections", "bench.markdown", "bench.leaderboard")
    offenders = {f"{p.relative_to(ROOT)}: {m}" for p in (ROOT / "bench" / "ablations").glob("*.py")
                 for m in _imports(p) if m.startswith(reporting)}
    assert not offenders, offenders


def test_the_leaderboard_renderings_depend_on_the_table_only():
    assert not any(m.startswith("bench.leaderboard_render") for m in _imports(ROOT / "bench" / "leaderboard_table.py"))
    assert not any(m == "bench.leaderboard" for m in _imports(ROOT / "bench" / "leaderboard_render.py"))
    assert "bench.report" not in _imports(ROOT / "bench" / "sections.py")  # report.py imports sections


def test_report_sections_are_found_by_class_and_given_the_registered_name(tmp_path):
    from bench import sections

    class Subclassed(BlockLesion):  # a plugin's variant of a built-in inherits its section
        pass

    class Own(TestTimeAblation):
        """A plugin ablation with no section of its own."""

        removes: ClassVar = "branch"

        def run(self, ctx): ...

    assert sections.renderer_for(Subclassed) is sections.block_lesion
    assert sections.has_own_section(BlockLesion) and not sections.has_own_section(Own)
    assert not sections.has_own_section(SkipRemoval)  # its comparisons are report.py's removal table
    assert sections.renderer_for(Own).keywords == {"doc": "A plugin ablation with no section of its own."}
