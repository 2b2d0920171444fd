"""Sweeps: the Optuna search (hpo.py), study storage, reading run folders, reports and plots."""
