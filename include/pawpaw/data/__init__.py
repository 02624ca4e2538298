"""Data in: the Kaggle-format reader, the labelled image set type, sampling a month, the one
image check, and the photo statistics drift and advice read."""
