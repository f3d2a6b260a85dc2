"""Cheap estimates: accuracy predictors (NumPy at inference, no torch) for the search."""
