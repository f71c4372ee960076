"""Recommendation from text: MovieLens-100K read from the installed ``recbole`` wheel
(:mod:`.movielens`), the field's evaluation protocol (:mod:`.protocol`: leave-one-out by time,
99 sampled negatives saved once, HR/NDCG/MRR) and baselines scored on exactly those candidates
(:mod:`.baselines`)."""
