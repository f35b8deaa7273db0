"""Decoding raw inputs with a trained network: strings to translations, image files to captions."""
