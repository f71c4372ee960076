"""Recommendation from text: MovieLens-100K read from the installed ``recbole`` wheel
(:mod:`.movielens`), the field's evaluation protocol (:mod:`.protocol`: leave-one-out by time,
99 sampled negatives saved once, HR/NDCG/MRR, warm and cold users), baselines scored on exactly
those candidates (:mod:`.baselines`), and the instruction ranker: leakage-free next-item yes/no
instruction files (:mod:`.instructions`) and a trained head's P(yes) as a score (:mod:`.ranker`);
text similarity over item embeddings (:mod:`.text_similarity`) and the two-tower model trained on
item texts (:mod:`.two_tower`), the fast first stage, and a slow second stage over its top items
(:mod:`.two_stage`)."""

from instructrec.recommendation.two_tower import TwoTowerDataModule, TwoTowerModule

__all__ = ["TwoTowerDataModule", "TwoTowerModule"]
