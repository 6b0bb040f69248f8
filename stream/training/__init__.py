"""The training lab: extraction, datasets, pseudo-fakes, the training recipe and evaluation.

Everything here serves ``deepwatch extract``, ``train`` and ``eval``; the live chain and the server
never import it (an import-linter contract in ``pyproject.toml`` checks that). Extraction reuses
the live per-frame detect -> track -> crop step, so training sees the crops the live app sees.
"""
