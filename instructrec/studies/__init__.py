"""Studies over configs: Optuna searches (``instructrec tune``, :mod:`.tuning`) and paper-style
ablations (``instructrec ablate``, :mod:`.ablation`), both made of ordinary ``fit`` runs of a base
config with overrides (:mod:`.runs`), reported with the tables of :mod:`.tables`."""
