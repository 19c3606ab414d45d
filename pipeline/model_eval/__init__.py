"""Evaluating trained models: the paper's last step (pipeline/stages/eval_model.py runs it)."""
