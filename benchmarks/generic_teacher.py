"""Students alone vs KD from a plain teacher vs KD from generic teachers (GTN), same budget for all.

Usage:  .venv/bin/python benchmarks/generic_teacher.py [--students 5] [--teacher-epochs 5]
        [--student-epochs 3] [--subset 10000] [--seeds 0 1 2] [--conditioning film none]
        [--mu 1.0] [--mu-mode balanced] [--sampler learned] [--draw pool|supernet]
        [--threads 1] [--out FILE] [--runs DIR]

Pool: `--students` connected NB201 cells at the ground-truth shape (C=8, N=1), picked at
evenly spaced params quantiles of `truth_nb201_fashion.jsonl` so they span the sizes.
Teachers (same arch, width, data and epochs): a plain one (`edgenas teacher`) and one generic
teacher per `--conditioning` option (`edgenas teacher --generic --conditioning C`; students
drawn by `--sampler` from the benchmark's own students, `--draw pool`, or from the whole
C=8 supernet, `--draw supernet`). Every student is then trained with the same TrainConfig
and seed: alone, KD from the plain teacher, KD from each generic teacher (FiLM: conditioned
on the student's capacity code; none: as a plain teacher).
All of it is repeated for every seed in `--seeds` (teachers included; the seed also draws the
data subset), so every arm has the same budget and the arms are paired by seed and student.
Reported (issues 15, 22; `edgenas.bench.stats`): per arm the 5-student mean as mean ± std over
seeds, and paired differences (each generic arm − plain, plain − alone, each generic − alone)
with 95% intervals: a t interval over the per-seed mean differences and a percentile bootstrap
over seeds × students.
Writes `--out` (default results/generic_teacher_v2.json); run folders under `--runs` (default
results/gtn_v2/; seed S adds `-seedS`, generic teachers and their students are named by their
options) are reused when rerun, so an interrupted benchmark continues. The issue-15 version
(one FiLM arm, uniform students, fixed μ) wrote results/generic_teacher_mu<MU>.json and gtn/.
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
from edgenas.distill.generic_teacher import GenericConfig
from edgenas.distill.teacher_net import TEACHER_ARCH
from edgenas.report.tables import rows_table, stdout
from edgenas.spaces.nb201 import NB201Arch, NB201Network
from edgenas.train.train_arch import train_arch
from edgenas.train.trainer import TrainConfig

RESULTS = Path(__file__).parent / "results"
KD = {"kd_weight": 1.0, "temperature": 4.0}


def arms_of(conditionings: list[str]) -> tuple[str, ...]:
    return ("alone", "kd_plain", *(f"kd_generic_{c}" for c in conditionings))


def pairs_of(conditionings: list[str]) -> list[tuple[str, str]]:
    generic = [f"kd_generic_{c}" for c in conditionings]
    return [*((g, "kd_plain") for g in generic), ("kd_plain", "alone"), *((g, "alone") for g in generic)]


def once(runs: Path, name: str, **kw) -> dict:
    """train_arch into RUNS/NAME; a finished run is read back, an interrupted one resumed.
    A folder trained with another arch, width, subset, TrainConfig (seed included) or generic
    options is refused."""
    folder = runs / name
    if (folder / "config.yaml").is_file():
        opts = yaml.safe_load((folder / "config.yaml").read_text())["options"]
        stored = (opts["arch"], opts["width"], opts["subset"], TrainConfig(**opts["train"]), opts.get("generic"))
        generic = GenericConfig(**kw["generic"]).model_dump() if kw.get("generic") else None
        wanted = (kw["arch"], kw["width"], kw["subset"], kw["train"], generic)
        if stored != wanted:
            raise ConfigError(f"{folder}: run has (arch, width, subset, train, generic) {stored}, wanted {wanted}")
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


def generic_options(args: argparse.Namespace, conditioning: str, students: list[str]) -> dict:
    return {
        "student_width": 8,
        "student_cells": 1,
        "conditioning": conditioning,
        "mu": args.mu,
        "mu_mode": args.mu_mode,
        "sampler": args.sampler,
        "pool": [str(NB201Arch.parse(a)) for a in students] if args.draw == "pool" else None,
    }


def generic_tag(args: argparse.Namespace, conditioning: str) -> str:
    """The part of a folder name that tells generic teachers (and their students) apart."""
    return f"{conditioning}-{args.mu_mode}{args.mu}-{args.sampler}-{args.draw}"


def seed_run(args: argparse.Namespace, seed: int, students: list[str]) -> dict:
    """Every teacher and every student in every arm, all with `seed`."""
    common = {"dataset": "fashion-mnist", "subset": args.subset}
    sfx = "" if seed == 0 else f"-seed{seed}"
    t_cfg = TrainConfig(epochs=args.teacher_epochs, seed=seed)
    s_cfg = TrainConfig(epochs=args.student_epochs, seed=seed)
    arms = arms_of(args.conditioning)
    teachers = {
        "plain": once(
            args.runs,
            f"teacher-plain{sfx}",
            arch=TEACHER_ARCH,
            width=args.teacher_width,
            train=t_cfg,
            command="teacher",
            **common,
        )
    }
    for c in args.conditioning:
        teachers[f"generic_{c}"] = once(
            args.runs,
            f"teacher-generic-{generic_tag(args, c)}{sfx}",
            arch=TEACHER_ARCH,
            width=args.teacher_width,
            train=t_cfg,
            command="teacher",
            generic=generic_options(args, c, students),
            **common,
        )
    rows = []
    threads = {t["threads"] for t in teachers.values()}
    for k, arch in enumerate(students):
        row = {"arch": arch}
        alone = once(args.runs, f"s{k}-alone{sfx}", arch=arch, width=8, train=s_cfg, **common)
        row["alone"] = alone["test_accuracy"]
        row["alone_train_seconds"] = alone["train_seconds"]
        threads.add(alone["threads"])
        for kind, t in teachers.items():
            tag = "plain" if kind == "plain" else f"generic-{generic_tag(args, kind.removeprefix('generic_'))}"
            res = once(
                args.runs,
                f"s{k}-kd-{tag}{sfx}",
                arch=arch,
                width=8,
                train=s_cfg,
                command="distill",
                teacher=str(Path(t["run_dir"]) / "model.pt"),
                kd=KD,
                **common,
            )
            row[f"kd_{kind}"] = res["test_accuracy"]
            row[f"kd_{kind}_train_seconds"] = res["train_seconds"]
            threads.add(res["threads"])
        row["params"] = count_params(NB201Network(NB201Arch.parse(arch), NetShape(8, 1, 1, 28, 10)))
        rows.append(row)
    mean = {c: float(np.mean([r[c] for r in rows])) for c in arms}
    seconds = sum(t["train_seconds"] for t in teachers.values()) + sum(
        r[f"{c}_train_seconds"] for r in rows for c in arms
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
                **({"sampler": _sampler(t)} if k != "plain" else {}),
            }
            for k, t in teachers.items()
        },
        "students": rows,
        "mean_accuracy": mean,
    }


def _sampler(result: dict) -> dict:
    """The generic teacher's final student distribution (from its model file's meta; {} if the file is gone)."""
    path = Path(result["run_dir"]) / "model.pt"
    if not path.is_file():  # model files are not committed (.gitignore)
        return {}
    return torch.load(path, weights_only=True, map_location="cpu")["meta"]["teacher"].get("sampler", {})


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
    p.add_argument("--conditioning", nargs="+", choices=("film", "none"), default=["film", "none"])
    p.add_argument("--mu", type=float, default=GenericConfig().mu, help="generic teachers' μ (GenericConfig's)")
    p.add_argument("--mu-mode", choices=("balanced", "fixed"), default=GenericConfig().mu_mode)
    p.add_argument("--sampler", choices=("learned", "uniform"), default=GenericConfig().sampler)
    p.add_argument(
        "--draw",
        choices=("pool", "supernet"),
        default="pool",
        help="generic teachers draw students from the benchmark's students (pool) or the whole C=8 supernet",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (teachers and students)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    p.add_argument("--out", type=Path, default=RESULTS / "generic_teacher_v2.json", help="results JSON")
    p.add_argument("--runs", type=Path, default=RESULTS / "gtn_v2", help="run folders (reused when rerun)")
    args = p.parse_args()
    if len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(f"--seeds has duplicates: {args.seeds}")
    if len(set(args.conditioning)) != len(args.conditioning):
        raise ConfigError(f"--conditioning has duplicates: {args.conditioning}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    arms, pairs = arms_of(args.conditioning), pairs_of(args.conditioning)
    students = pick_students(args.truth, args.students)
    per_seed = [seed_run(args, s, students) for s in args.seeds]
    # (seeds × students) accuracy in points per arm; the arms are paired by seed and student.
    acc = {c: np.array([[r[c] for r in ps["students"]] for ps in per_seed]) * 100 for c in arms}
    summary = {}
    for c in arms:
        m, sd = mean_std(acc[c].mean(axis=1))
        summary[c] = {
            "mean_points": round(m, 3),
            "std_points_over_seeds": None if sd is None else round(sd, 3),
            "by_seed_points": [round(float(v), 3) for v in acc[c].mean(axis=1)],
        }
    differences = {
        f"{a}_minus_{b}": {
            "t_over_seed_means": _rounded(t_interval((acc[a] - acc[b]).mean(axis=1)).as_dict()),
            "bootstrap_seeds_x_students": _rounded(bootstrap_difference(acc[a], acc[b]).as_dict()),
        }
        for a, b in pairs
    }
    out = {
        "schema_version": 3,
        "protocol": {
            "dataset": "fashion-mnist",
            "subset": args.subset,
            "student_shape": "C=8 N=1",
            "student_train": TrainConfig(epochs=args.student_epochs).model_dump(exclude={"seed"}),
            "teacher_arch": TEACHER_ARCH,
            "teacher_width": args.teacher_width,
            "teacher_train": TrainConfig(epochs=args.teacher_epochs).model_dump(exclude={"seed"}),
            "kd": KD,
            "generic": {c: GenericConfig(**generic_options(args, c, students)).model_dump() for c in args.conditioning},
            "draw": args.draw,
        },
        "seeds": args.seeds,
        "students": [
            {
                "arch": arch,
                "params": per_seed[0]["students"][k]["params"],
                **{f"{c}_mean_over_seeds": round(float(acc[c][:, k].mean() / 100), 5) for c in arms},
            }
            for k, arch in enumerate(students)
        ],
        # Per arm: the students' mean, mean ± std over seeds (points).
        "arms": summary,
        # a − b in points, 95%: t over the per-seed mean differences (n = seeds) and a percentile
        # bootstrap resampling seeds and students (stats.bootstrap_difference, fixed seed 0).
        "differences_points": differences,
        "train_seconds_total": round(sum(ps["train_seconds_total"] for ps in per_seed), 1),
        "per_seed": per_seed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")

    def cell(c: str, k: int | None = None) -> str:
        v = acc[c].mean(axis=1) if k is None else acc[c][:, k]
        m, sd = mean_std(v)
        return f"{m:.2f}" if sd is None else f"{m:.2f} ± {sd:.2f}"

    table = [(arch, out["students"][k]["params"], *(cell(c, k) for c in arms)) for k, arch in enumerate(students)]
    table.append(("mean", "", *(cell(c) for c in arms)))
    stdout.print(
        rows_table(
            f"student test accuracy (%), mean ± std over seeds {args.seeds}",
            ("student", "params", *arms),
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
        teachers = ", ".join(
            f"{k} {t['test_accuracy'] * 100:.2f}% ({t['train_seconds']:.0f}s)" for k, t in ps["teachers"].items()
        )
        stdout.print(
            f"seed {ps['seed']}: teachers {teachers}; {ps['train_seconds_total']:.0f}s training, "
            f"threads {ps['torch_threads']}"
        )
    stdout.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
