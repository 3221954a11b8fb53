"""The exercises: where each lives, what it is worth, its checker, its typical mistakes, and which
of the kit's functions already implement it (a solution must not call those)."""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sslkit.exercises import check_contrastive as con
from sslkit.exercises import check_eval as ev
from sslkit.exercises import check_masking as msk
from sslkit.exercises import check_noneg as neg
from sslkit.exercises import check_recon as rec
from sslkit.exercises import reference
from sslkit.exercises.core import Mistake, Reporter


@dataclass(frozen=True)
class Exercise:
    name: str                               # also the name of the function the student writes
    notebook: str                           # the notebook that poses it
    points: int                             # default weight when grading
    shapes: str                             # the student's scaffold comment: inputs -> outputs
    checker: Callable[[Reporter], None]
    mistakes: Mapping[str, Mistake]
    kit: tuple[str, ...] = ()               # dotted names of the kit's own implementations
    approximations: tuple[str, ...] = ()    # library functions that only approximate the answer

    @property
    def reference(self) -> Callable[..., Any]:
        return getattr(reference, self.name)


def _ex(name: str, notebook: str, points: int, shapes: str, checker: Callable[[Reporter], None],
        mistakes: Mapping[str, Mistake], kit: tuple[str, ...] = (), approximations: tuple[str, ...] = ()) -> Exercise:
    return Exercise(name, notebook, points, shapes, checker, mistakes, kit, approximations)


EXERCISES: dict[str, Exercise] = {e.name: e for e in (
    _ex("random_masking", "01_masking", 3,
        "tokens (B, N, D) -> kept (B, K, D), mask (B, N) bool True = removed,\n"
        "  ids_keep (B, K), ids_restore (B, N); K = N - round(mask_ratio * N)",
        msk.check_random_masking, msk.RANDOM_MASKING_MISTAKES, ("sslkit.pretext.masking.random_masking",)),
    _ex("bert_mask", "01_masking", 3,
        "ids (B, L) int64, chosen (B, L) bool -> inputs (B, L) int64, targets (B, L) int64 (-100 where not chosen)",
        msk.check_bert_mask, msk.BERT_MASK_MISTAKES, ("sslkit.pretext.masking.mask_tokens",)),
    _ex("nt_xent", "02_contrastive_pairs", 3, "z1, z2 (N, D) -> loss () averaged over the 2N anchors",
        con.check_nt_xent, con.NT_XENT_MISTAKES, ("sslkit.losses.contrastive.nt_xent",)),
    _ex("moco_loss", "02_contrastive_pairs", 2, "q, k (N, D), queue (Q, D) -> loss () averaged over the N queries",
        con.check_moco_loss, con.MOCO_MISTAKES, ("sslkit.losses.contrastive.info_nce",)),
    _ex("ema_update", "03_no_negatives", 2,
        "target, online: networks of the same architecture; momentum m in [0, 1] -> None (target changed in place)",
        neg.check_ema_update, neg.EMA_MISTAKES, ("sslkit.methods.base.ema_update",)),
    _ex("vicreg_variance", "03_no_negatives", 1, "z (N, D) -> loss ()",
        neg.check_vicreg_variance, neg.VARIANCE_MISTAKES,
        ("sslkit.losses.non_contrastive.variance_term", "sslkit.losses.non_contrastive.vicreg_terms")),
    _ex("vicreg_covariance", "03_no_negatives", 2, "z (N, D) -> loss ()",
        neg.check_vicreg_covariance, neg.COVARIANCE_MISTAKES,
        ("sslkit.losses.non_contrastive.covariance_term", "sslkit.losses.non_contrastive.vicreg_terms")),
    _ex("patchify", "04_reconstruction", 2, "x (B, C, H, W) -> patches (B, N, P*P*C), N = (H / P) * (W / P)",
        rec.check_patchify, rec.PATCHIFY_MISTAKES, ("sslkit.pretext.masking.patchify",)),
    _ex("masked_mse", "04_reconstruction", 2,
        "pred, target (B, N, P*P*C), mask (B, N) bool True = hidden -> loss ()",
        rec.check_masked_mse, rec.MASKED_MSE_MISTAKES, ("sslkit.losses.reconstruction.masked_mse",)),
    _ex("mae_decoder_input", "04_reconstruction", 2,
        "kept (B, K, D), mask_token (D,), ids_restore (B, N) -> tokens (B, N, D) in the original order",
        rec.check_mae_decoder_input, rec.DECODER_INPUT_MISTAKES, ("sslkit.methods.mae.MAE._decode",)),
    _ex("knn_predict", "05_probing", 3,
        "train_feats (N, D), train_labels (N,), test_feats (M, D) -> predicted classes (M,) int64",
        ev.check_knn_predict, ev.KNN_MISTAKES, ("sslkit.eval.knn.knn_predict", "sslkit.eval.knn.knn_accuracy")),
    _ex("stratified_subset", "05_probing", 2, "labels (N,) int64 -> indices (C * per_class,) int64",
        ev.check_stratified_subset, ev.STRATIFIED_MISTAKES, ("sslkit.eval.label_efficiency.stratified_subset",)),
    _ex("pca", "06_feature_explorer", 2, "x (N, D) -> coordinates (N, k) on the top-k principal directions",
        ev.check_pca, ev.PCA_MISTAKES, ("sslkit.widgets.embeddings.project_2d",),
        ("torch.pca_lowrank", "torch.svd_lowrank")),
    _ex("alignment", "06_feature_explorer", 1, "z1, z2 (N, D) -> alignment ()",
        con.check_alignment, con.ALIGNMENT_MISTAKES, ("sslkit.eval.diagnostics.alignment",)),
    _ex("uniformity", "06_feature_explorer", 1, "z (N, D) -> uniformity ()",
        con.check_uniformity, con.UNIFORMITY_MISTAKES, ("sslkit.eval.diagnostics.uniformity",)),
    _ex("dino_teacher", "06_feature_explorer", 2, "teacher_logits (B, K), center (K,) -> targets (B, K), rows sum to 1",
        neg.check_dino_teacher, neg.DINO_TEACHER_MISTAKES),
    _ex("update_center", "06_feature_explorer", 1, "center (K,), teacher_logits (B, K) -> new center (K,)",
        neg.check_update_center, neg.CENTER_MISTAKES),
)}


def code_objects(names: tuple[str, ...]) -> dict[Any, str]:
    """Code object -> dotted name for every function in ``names`` that exists (others are skipped:
    the kit may move a function without breaking the checkers)."""
    out = {}
    for dotted in names:
        found = _resolve(dotted)
        obj = inspect.unwrap(found) if callable(found) else None
        code = getattr(obj, "__code__", None)
        if code is not None:
            parts = dotted.split(".")
            public = ".".join(parts[:2] + parts[-1:])   # sslkit.losses.contrastive.nt_xent -> sslkit.losses.nt_xent
            out[code] = public if len(parts) > 3 and _resolve(public) is found else dotted
    return out


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None
