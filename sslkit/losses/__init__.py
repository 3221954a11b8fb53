"""Loss functions: pure functions of tensors, one family per file.

    contrastive      nt_xent (SimCLR), info_nce (MoCo, CPC)
    non_contrastive  negative_cosine (SimSiam/BYOL), barlow_twins, vicreg (+ its three terms)
    distillation     dino_loss
    reconstruction   masked_mse (MAE) and its norm_pix target, mlm_cross_entropy (BERT)
    clustering       sinkhorn (balanced soft codes), swav_loss (SwAV swapped prediction)
    language         next_token_cross_entropy (GPT), skipgram_negative_sampling (word2vec)
    masked_contrastive  masked_contrastive (wav2vec 2.0) (+ its logits and accuracy)
"""
from sslkit.losses.clustering import sinkhorn, swav_loss
from sslkit.losses.contrastive import info_nce, nt_xent
from sslkit.losses.distillation import dino_loss
from sslkit.losses.language import next_token_cross_entropy, skipgram_negative_sampling
from sslkit.losses.masked_contrastive import (candidate_logits, masked_contrastive,
                                              masked_contrastive_terms)
from sslkit.losses.non_contrastive import (barlow_twins, covariance_term, invariance_term,
                                           negative_cosine, variance_term, vicreg, vicreg_terms)
from sslkit.losses.reconstruction import masked_mse, mlm_cross_entropy, norm_pix

__all__ = ["nt_xent", "info_nce", "negative_cosine", "barlow_twins", "vicreg", "vicreg_terms",
           "invariance_term", "variance_term", "covariance_term", "dino_loss", "masked_mse",
           "mlm_cross_entropy", "norm_pix", "sinkhorn", "swav_loss", "next_token_cross_entropy",
           "skipgram_negative_sampling", "masked_contrastive", "masked_contrastive_terms",
           "candidate_logits"]
