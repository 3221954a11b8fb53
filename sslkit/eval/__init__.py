"""Evaluating representations: probes, fine-tuning, label efficiency and collapse diagnostics.

    feats, labels = sslkit.eval.extract_features(method, ds)              # (N, D), (N,)
    sslkit.eval.knn_accuracy(tr_f, tr_y, te_f, te_y, k=20)                 # weighted kNN (Wu et al. 2018)
    sslkit.eval.linear_probe(tr_f, tr_y, te_f, te_y)                       # logistic regression, L-BFGS
    sslkit.eval.fine_tune(method, train, test, steps=300)                  # end to end with a linear head
    res = sslkit.eval.label_efficiency({"SSL": method}, train, test)      # 1/5/10/all labels per class
    sslkit.eval.feature_std(feats), effective_rank(feats)                  # collapse monitors
    sslkit.eval.alignment(z1, z2), uniformity(z)                           # Wang & Isola 2020
    sslkit.eval.random_init(method, data=train)                            # fair baseline (BN recalibrated)
"""
from sslkit.eval.baselines import random_init, raw_pixels, recalibrate_batchnorm, supervised
from sslkit.eval.diagnostics import alignment, effective_rank, feature_std, uniformity
from sslkit.eval.features import extract_features
from sslkit.eval.finetune import fine_tune
from sslkit.eval.knn import knn_accuracy
from sslkit.eval.label_efficiency import LabelEfficiencyResult, label_efficiency, stratified_subset
from sslkit.eval.linear import linear_probe

__all__ = ["extract_features", "linear_probe", "knn_accuracy", "fine_tune", "label_efficiency",
           "LabelEfficiencyResult", "stratified_subset", "feature_std", "effective_rank", "alignment",
           "uniformity", "raw_pixels", "random_init", "recalibrate_batchnorm", "supervised"]
