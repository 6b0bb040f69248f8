"""The training lab: extraction, datasets, pseudo-fakes, the recipe and evaluation."""
