"""`edgenas retrieval`: embedding models for image retrieval (teacher, CDD student, static-KD student).

The library function is `edgenas.tasks.retrieval.run_retrieval`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import common_args, data_args, ints_tuple, positive_int, run_dir_args

DESCRIPTION = (
    "--role teacher trains an embedding teacher (CE + batch-hard triplet); --role cdd (default) "
    "distils a student as wide as --teacher while shrinking it (--variant edgenas: gates, to --budget, then "
    "fine-tuned; --variant paper: the authors' compactors + group lasso, the size emerging from --lasso), prunes it "
    "physically and exports it; --role static distils a fixed student the size of --student-like (the static-KD "
    "baseline). --protocol open (default) trains on some identities and retrieves held-out ones, as retrieval "
    "and re-identification are judged; a teacher and its students must hold out the same identities."
)


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", choices=("teacher", "cdd", "static"), default="cdd", help="what to train (cdd)")
    p.add_argument("--teacher", type=Path, help="cdd/static: teacher model.pt (from --role teacher)")
    p.add_argument("--student-like", type=Path, help="static: model.pt whose size the student takes (a CDD run)")
    p.add_argument("--budget", type=float, default=0.35, help="cdd: share of the teacher's params/FLOPs kept (0.35)")
    p.add_argument("--budget-metric", choices=("params", "flops", "both"), default="both", help="cdd: (both)")
    p.add_argument("--no-reset", action="store_true", help="cdd edgenas: no gradient resetting (ablation)")
    p.add_argument("--variant", choices=("edgenas", "paper"), default="edgenas", help="cdd: (edgenas)")
    p.add_argument("--init", choices=("teacher", "scratch"), help="cdd: student's start (paper: teacher)")
    p.add_argument("--threshold", type=float, help="cdd: removal threshold (edgenas gates 0.05; paper ‖W_c‖ 1e-5)")
    p.add_argument(
        "--lasso",
        type=float,
        default=0.004,
        help="cdd paper: group-lasso weight λ (0.004, the paper's for 120 epochs; 12 epochs need ~0.03-0.3)",
    )
    p.add_argument("--mask-ratio", type=float, default=0.5, help="cdd paper: unimportant share per sample (0.5)")
    p.add_argument("--neighbours", type=positive_int, default=2, help="cdd paper: teacher neighbours (2)")
    p.add_argument("--bank-size", type=positive_int, default=24000, help="cdd paper: memory bank rows (24000)")
    p.add_argument("--full-epochs", type=int, help="cdd paper: full-capacity epochs (epochs/6)")
    p.add_argument("--kl-weight", type=float, help="cdd: KL(T)·T² on id logits (paper 1, edgenas 0)")
    p.add_argument("--feature-weight", type=float, help="cdd: L2 of pooled block features (paper 0.5, edgenas 0)")
    p.add_argument("--protocol", choices=("open", "closed"), default="open", help="held-out identities (open)")
    p.add_argument("--test-ids", type=positive_int, default=4, help="open: identities held out (4)")
    p.add_argument("--split-seed", type=int, default=0, help="open: seed of the held-out draw (0)")
    p.add_argument("--pk", type=int, help="P×K batches: K images per identity, batch-size/K identities")
    p.add_argument("--widths", type=ints_tuple, default=(16, 32, 64), help="teacher: stage widths (16,32,64)")
    p.add_argument("--blocks", type=ints_tuple, default=(2, 2, 2), help="teacher: blocks per stage (2,2,2)")
    p.add_argument("--embed-dim", type=positive_int, default=128, help="teacher: embedding size (128)")
    p.add_argument("--epochs", type=positive_int, default=6, help="teacher/cdd training epochs (6)")
    p.add_argument("--finetune-epochs", type=int, help="cdd: after pruning; static: added (2; cdd paper: 0)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate (0.1)")
    p.add_argument("--test-subset", type=positive_int, help="use this many test images for query + gallery")
    p.add_argument("--query-fraction", type=float, default=0.1, help="share of each id's test images as queries")
    p.add_argument("--seed", type=int, default=0)
    run_dir_args(p, "retrieval")
    data_args(p, dataset_help="folder: one sub-folder per identity", val_fraction=False)
    common_args(p)


def handle(args: argparse.Namespace) -> int:
    from edgenas.tasks.retrieval import run_retrieval

    if args.resume is not None:
        res = run_retrieval(resume=args.resume, device=args.device, quiet=args.quiet)
    else:
        res = run_retrieval(
            role=args.role,
            teacher=str(args.teacher) if args.teacher else None,
            student_like=str(args.student_like) if args.student_like else None,
            budget=args.budget,
            metric=args.budget_metric,
            reset=not args.no_reset,
            variant=args.variant,
            init=args.init,
            threshold=args.threshold,
            lasso=args.lasso,
            mask_ratio=args.mask_ratio,
            neighbours=args.neighbours,
            bank_size=args.bank_size,
            full_epochs=args.full_epochs,
            kl_weight=args.kl_weight,
            feature_weight=args.feature_weight,
            protocol=args.protocol,
            test_ids=args.test_ids,
            split_seed=args.split_seed,
            pk=args.pk,
            dataset=args.dataset,
            data_dir=str(args.data_dir) if args.data_dir else None,
            subset=args.subset,
            test_subset=args.test_subset,
            query_fraction=args.query_fraction,
            resize=args.resize,
            widths=args.widths,
            blocks=args.blocks,
            embed_dim=args.embed_dim,
            epochs=args.epochs,
            finetune_epochs=args.finetune_epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            run_dir=args.run_dir,
            device=args.device,
            quiet=args.quiet,
        )
    print_retrieval(res)
    return 0


def print_retrieval(res: dict[str, Any]) -> None:
    """mAP, recall and size of the trained model; its reduction against the teacher for a student."""
    from edgenas.report.tables import rows_table, stdout

    m = res["metrics"]
    row = (
        res["role"],
        f"{m['map'] * 100:.2f}",
        f"{m['recall@1'] * 100:.2f}",
        f"{m['recall@5'] * 100:.2f}",
        f"{res['params']:,}",
        f"{res['flops'] / 1e6:.2f}M",
        f"{res['latency_ms']:.3f}",
    )
    cols = ("role", "mAP %", "R@1 %", "R@5 %", "params", "FLOPs", "latency ms")
    stdout.print(rows_table(f"edgenas retrieval  {res['queries']} queries / {res['gallery']} gallery", cols, [row]))
    if "params_reduction" in res:
        fewer = f"{res['params_reduction'] * 100:.1f}% fewer params, {res['flops_reduction'] * 100:.1f}% fewer FLOPs"
        stdout.print(f"vs teacher: {fewer}")
    stdout.print(f"run directory: {res['run_dir']}  (model.pt, model.onnx)")


COMMANDS.register(
    "retrieval",
    Command(
        "embedding models for image retrieval; CDD: distil a wide gated student and prune it to --budget",
        arguments,
        handle,
        description=DESCRIPTION,
    ),
)
