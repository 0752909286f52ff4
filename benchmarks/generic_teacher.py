"""Students alone vs KD from a plain teacher vs KD from the generic teacher (GTN), same budget for all.

Usage:  .venv/bin/python benchmarks/generic_teacher.py [--students 5] [--teacher-epochs 5]
        [--student-epochs 3] [--subset 10000]

Pool: `--students` connected NB201 cells at the ground-truth shape (C=8, N=1), picked at
evenly spaced params quantiles of `truth_nb201_fashion.jsonl` so they span the sizes.
Teachers (same arch, width, data and epochs): a plain one (`edgenas teacher`) and a generic
one (`edgenas teacher --generic`, students sampled from the C=8 supernet). Every student is
then trained three ways with the same TrainConfig and seed: alone, KD from the plain
teacher, KD from the generic teacher (conditioned on the student's capacity code).
Writes benchmarks/results/generic_teacher_mu<MU>.json; run folders under results/gtn/ are reused
when rerun, so an interrupted benchmark continues.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgenas.bench.truth import read_truth
from edgenas.core.space import NetShape
from edgenas.cost import count_params
from edgenas.distill.teacher_net import TEACHER_ARCH
from edgenas.report.tables import rows_table, stdout
from edgenas.spaces.nb201 import NB201Arch, NB201Network
from edgenas.train.train_arch import train_arch
from edgenas.train.trainer import TrainConfig

RESULTS = Path(__file__).parent / "results"


def once(name: str, **kw) -> dict:
    """train_arch into results/gtn/NAME; a finished run is read back, an interrupted one resumed."""
    folder = RESULTS / "gtn" / name
    if (folder / "results.json").is_file():
        return json.loads((folder / "results.json").read_text()) | {"run_dir": str(folder)}
    if folder.exists():
        return train_arch("", resume=folder, command=kw.get("command", "train"), device="cpu", quiet=True)
    return train_arch(run_dir=folder, device="cpu", quiet=True, **kw)


def pick_students(truth_file: Path, n: int) -> list[str]:
    rows = sorted(
        (r for r in read_truth(truth_file) if NB201Arch.parse(r["arch"]).is_connected), key=lambda r: r["params"]
    )
    idx = np.linspace(0.05, 0.95, n) * (len(rows) - 1)
    picked: list[str] = []
    for i in idx.round().astype(int):
        j = int(i)
        while rows[j]["arch"] in picked:
            j += 1
        picked.append(rows[j]["arch"])
    return picked


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--truth", type=Path, default=RESULTS / "truth_nb201_fashion.jsonl")
    p.add_argument("--students", type=int, default=5)
    p.add_argument("--teacher-width", type=int, default=16)
    p.add_argument("--teacher-epochs", type=int, default=5)
    p.add_argument("--student-epochs", type=int, default=3)
    p.add_argument("--subset", type=int, default=10000)
    p.add_argument("--mu", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    common = {"dataset": "fashion-mnist", "subset": args.subset}
    t_cfg = TrainConfig(epochs=args.teacher_epochs, seed=args.seed)
    s_cfg = TrainConfig(epochs=args.student_epochs, seed=args.seed)
    teachers = {
        "plain": once(
            "teacher-plain", arch=TEACHER_ARCH, width=args.teacher_width, train=t_cfg, command="teacher", **common
        ),
        "generic": once(
            f"teacher-generic-mu{args.mu}",
            arch=TEACHER_ARCH,
            width=args.teacher_width,
            train=t_cfg,
            command="teacher",
            generic={"student_width": 8, "student_cells": 1, "mu": args.mu},
            **common,
        ),
    }
    students = pick_students(args.truth, args.students)
    rows = []
    for k, arch in enumerate(students):
        row = {"arch": arch}
        alone = once(f"s{k}-alone", arch=arch, width=8, train=s_cfg, **common)
        row["alone"] = alone["test_accuracy"]
        for kind, t in teachers.items():
            res = once(
                f"s{k}-kd-{kind}" + (f"-mu{args.mu}" if kind == "generic" else ""),
                arch=arch,
                width=8,
                train=s_cfg,
                command="distill",
                teacher=str(Path(t["run_dir"]) / "model.pt"),
                kd={"kd_weight": 1.0, "temperature": 4.0},
                **common,
            )
            row[f"kd_{kind}"] = res["test_accuracy"]
            row[f"kd_{kind}_train_seconds"] = res["train_seconds"]
        row["alone_train_seconds"] = alone["train_seconds"]
        row["params"] = count_params(NB201Network(NB201Arch.parse(arch), NetShape(8, 1, 1, 28, 10)))
        rows.append(row)
    mean = {c: float(np.mean([r[c] for r in rows])) for c in ("alone", "kd_plain", "kd_generic")}
    out = {
        "schema_version": 1,
        "protocol": {
            "dataset": "fashion-mnist",
            "subset": args.subset,
            "student_shape": "C=8 N=1",
            "student_train": s_cfg.model_dump(),
            "teacher_arch": TEACHER_ARCH,
            "teacher_width": args.teacher_width,
            "teacher_train": t_cfg.model_dump(),
            "kd": {"kd_weight": 1.0, "temperature": 4.0},
            "generic": {"student_width": 8, "student_cells": 1, "mu": args.mu, "conditioning": "film-last-stage"},
        },
        "teachers": {
            k: {"test_accuracy": t["test_accuracy"], "train_seconds": t["train_seconds"]} for k, t in teachers.items()
        },
        "students": rows,
        "mean_accuracy": mean,
        "generic_minus_plain_points": round((mean["kd_generic"] - mean["kd_plain"]) * 100, 2),
        "plain_minus_alone_points": round((mean["kd_plain"] - mean["alone"]) * 100, 2),
        "generic_minus_alone_points": round((mean["kd_generic"] - mean["alone"]) * 100, 2),
    }
    (RESULTS / f"generic_teacher_mu{args.mu}.json").write_text(json.dumps(out, indent=2) + "\n")
    table = [
        (r["arch"], r["params"], *(f"{r[c] * 100:.2f}" for c in ("alone", "kd_plain", "kd_generic"))) for r in rows
    ]
    table.append(("mean", "", *(f"{mean[c] * 100:.2f}" for c in ("alone", "kd_plain", "kd_generic"))))
    stdout.print(
        rows_table("student test accuracy (%)", ("student", "params", "alone", "KD plain", "KD generic"), table)
    )
    for k, t in out["teachers"].items():
        stdout.print(f"teacher {k}: {t['test_accuracy'] * 100:.2f}% test, {t['train_seconds']:.0f}s training")


if __name__ == "__main__":
    main()
