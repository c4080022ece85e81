"""bench.perf's table (no benchmark runs here: these run in the default suite): the peak rows of issue 24
and a ``-k`` run merged into the previous latest.json."""

from __future__ import annotations

import json

from bench.perf import merged, render


def bench_row(name: str, **info) -> dict:
    return {"fullname": name, "extra_info": {"target": name, "ratio": 1.0, "goal": 0.9, **info}}


PEAK = {"model": "resnet", "flop_per_image": 157.5e6, "cpu": "AMD EPYC; torch AVX2", "bf16_cpu_flags": [],
        "peak_matmul": "1024x1024 matmul, 1 thread(s)",
        "peak": {"fp32": {"images_per_s": 316.3, "flop_per_s": 49.8e9, "peak_flop_per_s": 86.6e9,
                          "fraction_of_peak": 0.575},
                 "bf16": {"images_per_s": 30.8, "flop_per_s": 4.85e9, "peak_flop_per_s": 10.3e9,
                          "fraction_of_peak": 0.471}}}


def test_peak_rows_show_each_precision_against_the_machine_and_the_cpu():
    md = render({"datetime": "2026-12-06T07:48:12", "benchmarks": [
        bench_row("old"), bench_row("peak[resnet]", ratio=0.097, goal=None, **PEAK)]})
    assert "| old | 1.00x | >= 0.9x | met |" in md
    assert "| peak[resnet] | 0.10x | — | measured |" in md  # no goal: a measurement, never "NOT met"
    assert "CPU: AMD EPYC; torch AVX2; bf16 flags: none: bf16 emulated" in md
    assert "| resnet | fp32 | 316.3 | 157.5 | 49.80 | 86.60 | 57.5% |" in md
    assert "| resnet | bf16 | 30.8 | 157.5 | 4.85 | 10.30 | 47.1% |" in md
    assert "| resnet | bf16 / fp32 | 0.10x |" in md


def test_a_selected_run_replaces_only_its_rows(tmp_path):
    previous = tmp_path / "latest.json"
    previous.write_text(json.dumps({"datetime": "2026-11-27T20:30:47", "machine_info": {"cpu": {"brand_raw": "AMD EPYC"}},
                                    "benchmarks": [bench_row("a", ratio=2.0), bench_row("b", ratio=3.0)]}))
    data = merged({"datetime": "2026-12-06T08:00:00", "machine_info": {"cpu": {"brand_raw": "Intel Xeon"}},
                   "benchmarks": [bench_row("b", ratio=4.0)]}, previous)
    assert [(b["fullname"], b["extra_info"]["ratio"]) for b in data["benchmarks"]] == [("a", 2.0), ("b", 4.0)]
    assert data["datetime"] == "2026-12-06T08:00:00"
    md = render(data)
    assert md.startswith("Measured 2026-12-06T08:00:00 on Intel Xeon")
    assert "| a | 2.00x | >= 0.9x | met | measured 2026-11-27T20:30 on AMD EPYC (not re-run) |" in md  # the machine changes
    assert "| b | 4.00x | >= 0.9x | met |  |" in md  # measured in this run: nothing to say
    assert merged(data, tmp_path / "absent.json") is data


def test_a_row_kept_twice_keeps_where_it_was_first_measured(tmp_path):
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"datetime": "2026-11-27T20:30:47", "machine_info": {"cpu": {"brand_raw": "AMD EPYC"}},
                                 "benchmarks": [bench_row("a"), bench_row("b")]}))
    second = merged({"datetime": "2026-12-06T08:00:00", "machine_info": {"cpu": {"brand_raw": "Intel Xeon"}},
                     "benchmarks": [bench_row("b")]}, first)
    (tmp_path / "second.json").write_text(json.dumps(second))
    third = merged({"datetime": "2026-12-07T05:00:00", "benchmarks": [bench_row("b")]}, tmp_path / "second.json")
    assert "measured 2026-11-27T20:30 on AMD EPYC (not re-run)" in render(third)
