"""Spoken words as spectrogram images (`prepare.build`); one module per step: `wav` reads
recordings, `synthetic` says words with eSpeak NG (`espeak`), `perturb` adds noise and speed,
`split` holds speakers or takes out, `spectrogram` makes the features, `figures` the pictures.
"""
