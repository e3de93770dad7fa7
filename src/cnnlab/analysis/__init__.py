"""Measurements of the lecture's claims on trained models; each returns numbers and figures."""
