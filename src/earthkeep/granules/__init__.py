"""Satellite granules: GINA mirror, watched directory, posttroll publisher, segment gatherer, task broker."""
