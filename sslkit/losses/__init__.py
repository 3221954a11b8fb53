"""Loss functions: pure functions of tensors, one family per file.

    contrastive      nt_xent (SimCLR), info_nce (MoCo, CPC)
    non_contrastive  negative_cosine (SimSiam/BYOL), barlow_twins, vicreg (+ its three terms)
    distillation     dino_loss
    reconstruction   masked_mse (MAE), mlm_cross_entropy (BERT)
    masked_contrastive  masked_contrastive (wav2vec 2.0) (+ its logits and accuracy)
"""
from sslkit.losses.contrastive import info_nce, nt_xent
from sslkit.losses.distillation import dino_loss
from sslkit.losses.masked_contrastive import (candidate_logits, masked_contrastive,
                                              masked_contrastive_terms)
from sslkit.losses.non_contrastive import (barlow_twins, covariance_term, invariance_term,
                                           negative_cosine, variance_term, vicreg, vicreg_terms)
from sslkit.losses.reconstruction import masked_mse, mlm_cross_entropy

__all__ = ["nt_xent", "info_nce", "negative_cosine", "barlow_twins", "vicreg", "vicreg_terms",
           "invariance_term", "variance_term", "covariance_term", "dino_loss", "masked_mse",
           "mlm_cross_entropy", "masked_contrastive", "masked_contrastive_terms", "candidate_logits"]
