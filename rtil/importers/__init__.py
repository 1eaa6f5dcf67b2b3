"""Importers for generator checkpoints written by other code bases (read with weights_only loading)."""
