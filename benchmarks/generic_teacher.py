"""Students alone vs KD from a plain teacher vs KD from the generic teacher (GTN), same budget for all.

Usage:  .venv/bin/python benchmarks/generic_teacher.py [--students 5] [--teacher-epochs 5]
        [--student-epochs 3] [--subset 10000] [--mu 0.1] [--seeds 0 1 2] [--threads 1]

Pool: `--students` connected NB201 cells at the ground-truth shape (C=8, N=1), picked at
evenly spaced params quantiles of `truth_nb201_fashion.jsonl` so they span the sizes.
Teachers (same arch, width, data and epochs): a plain one (`edgenas teacher`) and a generic
one (`edgenas teacher --generic`, students sampled from the C=8 supernet). Every student is
then trained three ways with the same TrainConfig and seed: alone, KD from the plain
teacher, KD from the generic teacher (conditioned on the student's capacity code).
All of it is repeated for every seed in `--seeds` (teachers included; the seed also draws the
data subset), so every arm has the same budget and the arms are paired by seed and student.
Reported (issue 15, `edgenas.bench.stats`): per arm the 5-student mean as mean ± std over
seeds, and the paired differences with 95% intervals, both a t interval over the per-seed
mean differences and a percentile bootstrap over seeds × students.
Writes benchmarks/results/generic_teacher_mu<MU>.json; run folders under results/gtn/ (seed 0
without a suffix, seed S with `-seedS`) are reused when rerun, so an interrupted benchmark continues.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from edgenas.bench.stats import bootstrap_difference, mean_std, t_interval
from edgenas.bench.truth import read_truth
from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.cost import count_params
from edgenas.distill.teacher_net import TEACHER_ARCH
from edgenas.report.tables import rows_table, stdout
from edgenas.spaces.nb201 import NB201Arch, NB201Network
from edgenas.train.train_arch import train_arch
from edgenas.train.trainer import TrainConfig

RESULTS = Path(__file__).parent / "results"
ARMS = ("alone", "kd_plain", "kd_generic")
PAIRS = (("kd_generic", "kd_plain"), ("kd_plain", "alone"), ("kd_generic", "alone"))


def once(name: str, **kw) -> dict:
    """train_arch into results/gtn/NAME; a finished run is read back, an interrupted one resumed.
    A folder trained with another arch, width, subset or TrainConfig (seed included) is refused."""
    folder = RESULTS / "gtn" / name
    if (folder / "config.yaml").is_file():
        opts = yaml.safe_load((folder / "config.yaml").read_text())["options"]
        stored = (opts["arch"], opts["width"], opts["subset"], TrainConfig(**opts["train"]))
        wanted = (kw["arch"], kw["width"], kw["subset"], kw["train"])
        if stored != wanted:
            raise ConfigError(f"{folder}: run has (arch, width, subset, train) {stored}, wanted {wanted}")
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


def seed_run(args: argparse.Namespace, seed: int, students: list[str]) -> dict:
    """Both teachers and every student three ways, all with `seed`; the old one-seed record."""
    common = {"dataset": "fashion-mnist", "subset": args.subset}
    sfx = "" if seed == 0 else f"-seed{seed}"  # seed 0 keeps the folder names of the first (one-seed) run
    t_cfg = TrainConfig(epochs=args.teacher_epochs, seed=seed)
    s_cfg = TrainConfig(epochs=args.student_epochs, seed=seed)
    teachers = {
        "plain": once(
            f"teacher-plain{sfx}", arch=TEACHER_ARCH, width=args.teacher_width, train=t_cfg, command="teacher", **common
        ),
        "generic": once(
            f"teacher-generic-mu{args.mu}{sfx}",
            arch=TEACHER_ARCH,
            width=args.teacher_width,
            train=t_cfg,
            command="teacher",
            generic={"student_width": 8, "student_cells": 1, "mu": args.mu},
            **common,
        ),
    }
    rows = []
    threads = {t["threads"] for t in teachers.values()}
    for k, arch in enumerate(students):
        row = {"arch": arch}
        alone = once(f"s{k}-alone{sfx}", arch=arch, width=8, train=s_cfg, **common)
        row["alone"] = alone["test_accuracy"]
        threads.add(alone["threads"])
        for kind, t in teachers.items():
            res = once(
                f"s{k}-kd-{kind}" + (f"-mu{args.mu}" if kind == "generic" else "") + sfx,
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
            threads.add(res["threads"])
        row["alone_train_seconds"] = alone["train_seconds"]
        row["params"] = count_params(NB201Network(NB201Arch.parse(arch), NetShape(8, 1, 1, 28, 10)))
        rows.append(row)
    mean = {c: float(np.mean([r[c] for r in rows])) for c in ARMS}
    seconds = sum(t["train_seconds"] for t in teachers.values()) + sum(
        r[f"{c}_train_seconds"] for r in rows for c in ARMS
    )
    return {
        "seed": seed,
        "student_train": s_cfg.model_dump(),
        "teacher_train": t_cfg.model_dump(),
        "torch_threads": sorted(threads),
        "train_seconds_total": round(seconds, 1),
        "teachers": {
            k: {
                "test_accuracy": t["test_accuracy"],
                "train_seconds": t["train_seconds"],
                "run_dir": Path(t["run_dir"]).name,
            }
            for k, t in teachers.items()
        },
        "students": rows,
        "mean_accuracy": mean,
        "generic_minus_plain_points": round((mean["kd_generic"] - mean["kd_plain"]) * 100, 2),
        "plain_minus_alone_points": round((mean["kd_plain"] - mean["alone"]) * 100, 2),
        "generic_minus_alone_points": round((mean["kd_generic"] - mean["alone"]) * 100, 2),
    }


def _rounded(d: dict) -> dict:
    """An Interval's dict with floats to 3 decimals; NaN (no interval from one value) as null."""
    return {k: ((None if v != v else round(v, 3)) if isinstance(v, float) else v) for k, v in d.items()}


def _iv(d: dict) -> str:
    if d["low"] is None:
        return f"{d['estimate']:+.2f}"
    return f"{d['estimate']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--truth", type=Path, default=RESULTS / "truth_nb201_fashion.jsonl")
    p.add_argument("--students", type=int, default=5)
    p.add_argument("--teacher-width", type=int, default=16)
    p.add_argument("--teacher-epochs", type=int, default=5)
    p.add_argument("--student-epochs", type=int, default=3)
    p.add_argument("--subset", type=int, default=10000)
    p.add_argument("--mu", type=float, default=0.1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (teachers and students)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    args = p.parse_args()
    if len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(f"--seeds has duplicates: {args.seeds}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    students = pick_students(args.truth, args.students)
    per_seed = [seed_run(args, s, students) for s in args.seeds]
    # (seeds × students) accuracy in points per arm; the arms are paired by seed and student.
    acc = {c: np.array([[r[c] for r in ps["students"]] for ps in per_seed]) * 100 for c in ARMS}
    arms = {}
    for c in ARMS:
        m, sd = mean_std(acc[c].mean(axis=1))
        arms[c] = {
            "mean_points": round(m, 3),
            "std_points_over_seeds": None if sd is None else round(sd, 3),
            "by_seed_points": [round(float(v), 3) for v in acc[c].mean(axis=1)],
        }
    differences = {
        f"{a}_minus_{b}": {
            "t_over_seed_means": _rounded(t_interval((acc[a] - acc[b]).mean(axis=1)).as_dict()),
            "bootstrap_seeds_x_students": _rounded(bootstrap_difference(acc[a], acc[b]).as_dict()),
        }
        for a, b in PAIRS
    }
    mean = {c: float(acc[c].mean() / 100) for c in ARMS}
    out = {
        "schema_version": 2,
        "protocol": {
            "dataset": "fashion-mnist",
            "subset": args.subset,
            "student_shape": "C=8 N=1",
            "student_train": TrainConfig(epochs=args.student_epochs).model_dump(exclude={"seed"}),
            "teacher_arch": TEACHER_ARCH,
            "teacher_width": args.teacher_width,
            "teacher_train": TrainConfig(epochs=args.teacher_epochs).model_dump(exclude={"seed"}),
            "kd": {"kd_weight": 1.0, "temperature": 4.0},
            "generic": {"student_width": 8, "student_cells": 1, "mu": args.mu, "conditioning": "film-last-stage"},
        },
        "seeds": args.seeds,
        "students": [
            {
                "arch": arch,
                "params": per_seed[0]["students"][k]["params"],
                **{f"{c}_mean_over_seeds": round(float(acc[c][:, k].mean() / 100), 5) for c in ARMS},
            }
            for k, arch in enumerate(students)
        ],
        # Per arm: the 5-student mean, mean ± std over seeds (points).
        "arms": arms,
        # a − b in points, 95%: t over the per-seed mean differences (n = seeds) and a percentile
        # bootstrap resampling seeds and students (stats.bootstrap_difference, fixed seed 0).
        "differences_points": differences,
        "mean_accuracy": mean,
        "generic_minus_plain_points": round((mean["kd_generic"] - mean["kd_plain"]) * 100, 2),
        "plain_minus_alone_points": round((mean["kd_plain"] - mean["alone"]) * 100, 2),
        "generic_minus_alone_points": round((mean["kd_generic"] - mean["alone"]) * 100, 2),
        "train_seconds_total": round(sum(ps["train_seconds_total"] for ps in per_seed), 1),
        "per_seed": per_seed,
    }
    (RESULTS / f"generic_teacher_mu{args.mu}.json").write_text(json.dumps(out, indent=2) + "\n")

    def cell(c: str, k: int | None = None) -> str:
        v = acc[c].mean(axis=1) if k is None else acc[c][:, k]
        m, sd = mean_std(v)
        return f"{m:.2f}" if sd is None else f"{m:.2f} ± {sd:.2f}"

    table = [(arch, out["students"][k]["params"], *(cell(c, k) for c in ARMS)) for k, arch in enumerate(students)]
    table.append(("mean", "", *(cell(c) for c in ARMS)))
    stdout.print(
        rows_table(
            f"student test accuracy (%), mean ± std over seeds {args.seeds}",
            ("student", "params", "alone", "KD plain", "KD generic"),
            table,
        )
    )
    stdout.print(
        rows_table(
            "paired differences (points, 95%)",
            ("difference", "t over per-seed means", "bootstrap seeds × students"),
            [(k, _iv(d["t_over_seed_means"]), _iv(d["bootstrap_seeds_x_students"])) for k, d in differences.items()],
        )
    )
    for ps in per_seed:
        t = ps["teachers"]
        arm_means = ", ".join(f"{c} {ps['mean_accuracy'][c] * 100:.2f}" for c in ARMS)
        stdout.print(
            f"seed {ps['seed']}: teacher plain {t['plain']['test_accuracy'] * 100:.2f}% "
            f"({t['plain']['train_seconds']:.0f}s), generic {t['generic']['test_accuracy'] * 100:.2f}% "
            f"({t['generic']['train_seconds']:.0f}s); arms {arm_means}; "
            f"{ps['train_seconds_total']:.0f}s training, threads {ps['torch_threads']}"
        )


if __name__ == "__main__":
    main()
