"""Predictions on a user's own files: images, recordings, review lines.

Each file goes through the preprocessing of the dataset the model was trained on, read from
that prepared dataset (its manifest, vocabulary and normalisation) and done by the same
functions prepare uses (`cnnlab.data`), so a file gets the numbers its prepared copy would.
"""
