"""Options of a retrieval run (`config.yaml` holds them; a resumed run reuses them).

Validated before a run folder exists: a bad value is a one-line `ConfigError` naming the
CLI flag. CDD's options are a sub-model (`cdd`), its ablation switches a sub-model of
that (`cdd.experimental`); their flat keys (`budget=`, `reset=False`) are accepted too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgenas.core.errors import ConfigError, UserError
from edgenas.tasks.retrieval.cdd import CDDConfig, CDDExperimental

COMMAND = "retrieval"
ROLES = ("teacher", "cdd", "static")


class RetrievalOptions(BaseModel):
    """Every option of a retrieval run (stored in `config.yaml`, reused on resume)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["teacher", "cdd", "static"] = "cdd"
    teacher: str | None = None
    student_like: str | None = None
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    # open: held-out identities for query/gallery (the retrieval protocol); closed: all ids trained on
    protocol: Literal["open", "closed"] = "open"
    test_ids: int = Field(4, ge=1, description="open: identities held out (a seeded draw)")
    split_seed: int = Field(0, description="open: seed of the held-out draw (the same for teacher and students)")
    pk: int | None = Field(None, ge=2, description="P×K batches: K images of each of batch_size/K identities")
    subset: int | None = Field(None, ge=1)
    test_subset: int | None = Field(None, ge=1)
    query_fraction: float = Field(0.1, gt=0, lt=1)
    resize: int | None = Field(None, ge=1)
    # network (teacher role; a CDD student copies its teacher, a static one `student_like`)
    stem: int = Field(16, ge=1)
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: tuple[int, ...] = (2, 2, 2)
    embed_dim: int = Field(128, ge=1)
    # training
    epochs: int = Field(6, ge=1, description="teacher / CDD compression / static (plus finetune_epochs)")
    finetune_epochs: int | None = Field(
        None, ge=0, description="CDD: after pruning; static: added to epochs (2; CDD paper: 0)"
    )
    init: Literal["teacher", "scratch"] | None = Field(
        None, description="CDD: the student starts from the teacher's weights or at random (paper: teacher)"
    )
    batch_size: int = Field(128, ge=2)
    lr: float = Field(0.1, gt=0)
    finetune_lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    margin: float = Field(0.2, ge=0, description="triplet margin on normalised embeddings")
    embed_kd_weight: float | None = Field(None, ge=0, description="(1; CDD paper: 0)")
    rkd_weight: float | None = Field(None, ge=0, description="(1; CDD paper: 0)")
    cdd: CDDConfig = CDDConfig()
    seed: int = 0
    latency_repeats: int = Field(200, ge=1)

    @model_validator(mode="after")
    def _variant_defaults(self) -> RetrievalOptions:
        """Unset options take the value of CDD's variant (recorded resolved in `config.yaml`)."""
        paper = self.role == "cdd" and self.cdd.variant == "paper"
        defaults = {
            "finetune_epochs": 0 if paper else 2,
            "init": "teacher" if paper else "scratch",
            "embed_kd_weight": 0.0 if paper else 1.0,
            "rkd_weight": 0.0 if paper else 1.0,
        }
        for key, value in defaults.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.pk is not None and self.batch_size % self.pk:
            raise ValueError(f"--batch-size {self.batch_size} is not a multiple of --pk {self.pk}")
        return self


def make_options(**options: Any) -> RetrievalOptions:
    """Validated options from flat keywords (CDD's and its ablations' too); a bad value is a
    `ConfigError` naming the CLI flag, a missing model file a `UserError`."""
    budget = options.get("budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < 1):
        raise ConfigError(
            f"--budget {budget}: give the share of the teacher's params/FLOPs to keep, a number "
            "strictly between 0 and 1 (e.g. 0.35 keeps 35%)"
        )
    cdd_keys = CDDConfig.model_fields.keys() | CDDExperimental.model_fields.keys()
    cdd = {k: options.pop(k) for k in list(options) if k in cdd_keys}
    try:
        opts = RetrievalOptions(**options, cdd=CDDConfig(**cdd))
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a check across options names its flags itself
            raise ConfigError(msg) from None
        raise ConfigError(f"--{str(err['loc'][-1]).replace('_', '-')}: {msg}") from None
    make = "make one with `edgenas retrieval --role teacher`"
    for flag, path in (("--teacher", opts.teacher), ("--student-like", opts.student_like)):
        if path is not None and not (Path(path).is_file() or (Path(path) / "model.pt").is_file()):
            raise UserError(f"{flag} {path}: no such model file ({make})")
    if opts.role in ("cdd", "static") and opts.teacher is None:
        raise UserError(f"--role {opts.role} needs --teacher MODEL_FILE ({make})")
    if opts.role == "static" and opts.student_like is None:
        raise UserError("--role static needs --student-like MODEL_FILE (e.g. the model.pt of a CDD run) for its size")
    return opts
