#!/usr/bin/env bash
# Multi30k en->de with SmolLM2-135M-Instruct on the CPU budget (see README.md here):
# zero-shot validation, fine-tuning with a validation learning curve, then the whole test2016 set.
# Usage: bash experiments/generation_multi30k/run.sh [MAX_STEPS] [VAL_EVERY]
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=${WANDB_MODE:-offline}
steps=${1:-800}; every=${2:-200}
config=configs/generation/multi30k_en_de.yaml
root=runs/generation/multi30k_en_de
instructrec validate --config $config --trainer.default_root_dir $root/zero_shot --trainer.logger false
instructrec fit --config $config --trainer.max_steps "$steps" --trainer.val_check_interval "$every"
instructrec test --config $config --ckpt_path $root/checkpoints/best.ckpt --trainer.logger false
